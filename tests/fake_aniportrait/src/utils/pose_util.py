import numpy as np


def smooth_pose_seq(pose_seq, window_size=5):
    k = np.ones(window_size) / window_size
    return np.stack([np.convolve(np.pad(c, window_size // 2, mode="edge"), k, "valid") for c in pose_seq.T], 1)


def project_points(points_3d, transformation_matrix, pose_vectors, image_shape):
    h, w = image_shape
    out = points_3d[:, :, :2] + pose_vectors[:, None, 3:5] * 0.1 + transformation_matrix[:2, 3][None, None]
    return out * [w, h]
