"""TEST DOUBLE for a TensorRT end2end (EfficientNMS) engine: a deterministic answer in the end2end layout.

Not a detector: per image, one "detection" = the box around the pixels that are not letterbox padding
(114/255 in every channel), score = the mean pixel value, class 0. Shapes and dtypes come from its config.
"""
import json

import numpy as np
import triton_python_backend_utils as pb_utils

PAD = np.float32(114.0 / 255.0)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.outputs = {o["name"]: (pb_utils.triton_string_to_numpy(o["data_type"]), [int(d) for d in o["dims"]])
                        for o in config["output"]}

    def _zeros(self, name, batch):
        dtype, dims = self.outputs[name]
        return np.zeros([batch, *dims], dtype=dtype)

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            batch = images.shape[0]
            num, boxes, scores, classes = (self._zeros(n, batch) for n in
                                           ("num_dets", "det_boxes", "det_scores", "det_classes"))
            for b in range(batch):
                content = np.any(images[b] != PAD, axis=0)
                ys, xs = np.nonzero(content)
                if xs.size:
                    num[b, 0] = 1
                    boxes[b, 0] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                    scores[b, 0] = images[b].mean()
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("num_dets", num), pb_utils.Tensor("det_boxes", boxes),
                pb_utils.Tensor("det_scores", scores), pb_utils.Tensor("det_classes", classes)]))
        return responses
