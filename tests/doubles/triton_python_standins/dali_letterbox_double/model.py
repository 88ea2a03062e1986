"""TEST DOUBLE for the DALI letterbox model: OpenCV decode + NumPy letterbox, same inputs/outputs as its config."""
import json

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

# yolo_triton: this checkout through PYTHONPATH (tests/conftest.py), else the venv's install (make setup).
from yolo_triton.postprocess import letterbox, letterbox_uint8


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        outputs = {o["name"]: o for o in config["output"]}
        self.images_name, self.letterbox_name = (o["name"] for o in config["output"])
        self.imgsz = int(outputs[self.images_name]["dims"][-1])
        self.images_dtype = pb_utils.triton_string_to_numpy(outputs[self.images_name]["data_type"])
        self.letterbox_dtype = pb_utils.triton_string_to_numpy(outputs[self.letterbox_name]["data_type"])

    def _one(self, encoded: np.ndarray):
        if encoded.size == 0:
            raise ValueError("empty input: 0 bytes")
        image = cv2.imdecode(np.ascontiguousarray(encoded, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode {encoded.size} bytes as an image")
        if self.images_dtype == np.uint8:  # INPUT_DTYPE=uint8: the letterboxed RGB CHW pixels, no / 255
            padded, info = letterbox_uint8(image, self.imgsz)
            chw = np.ascontiguousarray(padded[..., ::-1].transpose(2, 0, 1))
        else:
            chw, info = letterbox(image, self.imgsz)
        return chw, [info.ratio, info.pad_x, info.pad_y, info.orig_h, info.orig_w]

    def execute(self, requests):
        responses = []
        for request in requests:
            batch = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            try:
                pairs = [self._one(row) for row in batch]
            except ValueError as err:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"stand-in decoder: {err}")))
                continue
            images = np.stack([p[0] for p in pairs]).astype(self.images_dtype)
            boxes = np.asarray([p[1] for p in pairs], dtype=self.letterbox_dtype)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(self.images_name, images), pb_utils.Tensor(self.letterbox_name, boxes)]))
        return responses
