import numpy as np


class FaceMeshVisualizer:
    def __init__(self, forehead_edge=False):
        pass

    def draw_landmarks(self, image_size, keypoints, normed=False):
        w, h = image_size
        img = np.zeros((h, w, 3), np.uint8)
        for i, p in enumerate(np.asarray(keypoints)[:, :2]):
            x, y = (p * [w, h] if normed else p).astype(int)
            img[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)] = (255, 64 * i, 255 - 64 * i)  # BGR
        return img
