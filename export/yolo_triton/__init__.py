"""Shared, importable logic behind the export steps in ``export/``.

Every function here takes paths and parameters and returns results; the step scripts beside this
package are thin CLIs over it, and the tests call it directly.
"""
