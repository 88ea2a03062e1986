"""STAND-IN for the DALI letterbox model (no DALI backend for this CPU server): a Python-backend model
that runs the project's OWN DALI pipeline (yolo_triton.dali_pipeline) with CPU operators. Same inputs
and outputs as the generated DALI config; requests the dynamic batcher merged run as one DALI batch."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils

# The stub's interpreter ignores PYTHONPATH: yolo_triton comes from the venv's install (make setup).
from yolo_triton.dali_pipeline import INPUT_NAME, letterbox_pipeline


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        outputs = {o["name"]: o for o in config["output"]}
        self.images_name, self.letterbox_name = (o["name"] for o in config["output"])
        imgsz = int(outputs[self.images_name]["dims"][-1])
        # images FP32 (/255 in the pipeline) or UINT8 (INPUT_DTYPE=uint8: the detector divides)
        self.images_dtype = np.uint8 if outputs[self.images_name]["data_type"] == "TYPE_UINT8" else np.float32
        uint8 = {"input_dtype": "uint8"} if self.images_dtype == np.uint8 else {}
        self.pipe = letterbox_pipeline(imgsz, "cpu", batch_size=int(config["max_batch_size"]), num_threads=2,
                                       prefetch_queue_depth=1, **uint8)  # one fed batch, one run
        self.pipe.build()

    def execute(self, requests):
        samples, owners = [], []
        for index, request in enumerate(requests):
            rows = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            for row in rows:
                samples.append(np.ascontiguousarray(row, dtype=np.uint8))
                owners.append(index)
        try:
            if any(s.size == 0 for s in samples):
                raise ValueError("empty input: 0 bytes")
            self.pipe.feed_input(INPUT_NAME, samples)
            images, letterbox = self.pipe.run()
            images = np.stack([np.array(images[i]) for i in range(len(samples))])
            letterbox = np.stack([np.array(letterbox[i]) for i in range(len(samples))])
        except Exception as err:  # noqa: BLE001 - answered per request, the server keeps serving
            # One TritonError PER response: the Python backend (r24.10) frees a response's error with the
            # response, so one error object shared by the responses of a batch is used after it was freed
            # (garbled messages, then SIGSEGV in libtriton_python.so: found by make soak).
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"DALI stand-in: {err}"))
                    for _ in requests]
        owners = np.asarray(owners)
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(self.images_name, images[owners == i].astype(self.images_dtype)),
            pb_utils.Tensor(self.letterbox_name, letterbox[owners == i].astype(np.float64))])
            for i in range(len(requests))]
