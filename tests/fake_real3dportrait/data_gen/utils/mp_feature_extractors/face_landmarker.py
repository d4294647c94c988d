import numpy as np


class MediapipeLandmarker:
    def __init__(self):
        model_path = 'data_gen/utils/mp_feature_extractors/face_landmarker.task'  # relative to the cwd, as upstream
        with open(model_path, "rb") as f:
            self.model = f.read()

    def extract_lm478_from_img(self, img):
        return np.full((478, 2), img.shape[0] / 2, np.float32)
