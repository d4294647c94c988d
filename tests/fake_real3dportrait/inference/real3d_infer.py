"""Fake ``inference/real3d_infer.py``: upstream's command line, defaults, traps and order of operations."""
import os
import sys

sys.path.append('./')
import copy  # noqa: E402, I001 - after the path change, as upstream
import random
import time
import warnings

import cv2
import numpy as np
import torch
import torch.utils.model_zoo  # noqa: F401  (as upstream's deeplabv3 encoders: torch.utils.model_zoo.load_url)
import yaml
from numpy.lib.function_base import quantile  # noqa: F401  (numpy 1 only, as upstream's fit_3dmm_landmark.py)
from scipy.io import loadmat

from data_gen.utils.mp_feature_extractors.face_landmarker import MediapipeLandmarker
from modules.nets import SECC2Video, VAEModel

warnings.filterwarnings("ignore", category=np.VisibleDeprecationWarning)  # numpy 1 only, as upstream


RESNET34_URL = 'https://download.pytorch.org/models/resnet34-333f7ec4.pth'


def load_ckpt(model, ckpt_dir, model_name='model'):
    ckpt = sorted(f for f in os.listdir(ckpt_dir) if f.startswith("model_ckpt_steps_"))[0]
    checkpoint = torch.load(os.path.join(ckpt_dir, ckpt), map_location='cpu')  # a pickled dict, not only tensors
    state = {k[len(model_name) + 1:]: v for k, v in checkpoint["state_dict"].items()}
    model.load_state_dict(state, strict=True)


class GeneFace2Infer:
    def __init__(self, audio2secc_dir, head_model_dir, torso_model_dir, device=None, inp=None):
        if device is None:
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        self.device = device
        with open(f"{audio2secc_dir}/config.yaml") as f:
            self.audio2secc_hparams = copy.deepcopy(yaml.safe_load(f))
        self.audio2secc_model = VAEModel(audio_in_dim=self.audio2secc_hparams["audio_in_dim"])
        load_ckpt(self.audio2secc_model, audio2secc_dir)
        self.secc2video_model = SECC2Video()
        # upstream: the img2plane encoder (DeepLabV3, encoder_weights="imagenet") loads torchvision's ResNet-34
        # through torch.utils.model_zoo while it is built; the fake never downloads it, it must be in the hub cache
        resnet34 = os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(RESNET34_URL))
        assert os.path.isfile(resnet34), f'{resnet34} missing: model_zoo would download it'
        self.secc2video_model.imagenet = torch.utils.model_zoo.load_url(RESNET34_URL)
        load_ckpt(self.secc2video_model, torso_model_dir)
        self.secc2video_model.mit_b0 = torch.load('checkpoints/pretrained_ckpts/mit_b0.pth')
        self.audio2secc_model.to(device).eval()
        self.secc2video_model.to(device).eval()
        bfm = loadmat('deep_3drecon/BFM/BFM_model_front.mat')
        self.mean_shape = torch.tensor(bfm['meanshape'], dtype=torch.float32).cuda()
        self.keypoints = np.load('deep_3drecon/BFM/index_mp468_from_mesh35709.npy')
        # upstream: MediapipeSegmenter() opens this path (relative to the cwd)
        with open('data_gen/utils/mp_feature_extractors/selfie_multiclass_256x256.tflite', 'rb') as f:
            assert f.read(4) == b'TFL3', 'segmenter model'

    def infer_once(self, inp):
        self.inp = inp
        samples = self.prepare_batch_from_inp(inp)
        seed = inp['seed'] if inp['seed'] is not None else int(time.time())
        random.seed(seed)
        torch.manual_seed(seed)
        np.random.seed(seed)
        return self.forward_system(samples, inp)

    def prepare_batch_from_inp(self, inp):
        os.makedirs('infer_out/tmp', exist_ok=True)
        os.system(f"cp {inp['src_image_name']} infer_out/tmp/cropped_src_img.png")
        inp['src_image_name'] = 'infer_out/tmp/cropped_src_img.png'
        lm = MediapipeLandmarker().extract_lm478_from_img(np.zeros((512, 512, 3)))
        self.save_wav16k(inp['drv_audio_name'])
        from data_gen.utils.process_audio.extract_hubert import get_hubert_from_16k_wav, pad8
        hubert = pad8(get_hubert_from_16k_wav(self.wav16k_name).detach().numpy())
        t_x = hubert.shape[0]
        img = cv2.resize(cv2.cvtColor(cv2.imread(inp['src_image_name']), cv2.COLOR_BGR2RGB), (512, 512))
        sample = {
            'hubert': torch.from_numpy(hubert).float().unsqueeze(0).cuda(),
            'mouth_amp': torch.ones([1, 1]).cuda() * inp['mouth_amp'],
            'ref_head_img': ((torch.tensor(img) - 127.5) / 127.5).float().unsqueeze(0).permute(0, 3, 1, 2).cuda(),
        }
        euler = torch.tensor([[float(lm.mean()) / 512, 0.1, -0.2]]).cuda()
        if inp['drv_pose_name'] == 'static':
            sample['euler'] = euler.repeat([t_x // 2, 1])
        else:  # upstream fits a 3DMM to every frame of the pose video and copies its head motion
            raise FileNotFoundError(f"fake: pose video {inp['drv_pose_name']} (upstream's default is an example clip)")
        if inp.get("map_to_init_pose", 'True') in ['True', True]:
            sample['euler'] = sample['euler'] + (euler - sample['euler'][0:1])
        sample['camera'] = torch.cat([sample['euler'], self.mean_shape[:, :22].repeat([t_x // 2, 1])], -1)
        return sample

    @torch.no_grad()
    def forward_system(self, batch, inp):
        ret = {}
        self.audio2secc_model.forward(batch, ret=ret, train=False, temperature=inp['temperature'])
        exp = ret['pred'][0]
        if inp['blink_mode'] == 'period':
            for i in range(len(exp)):
                if i % (25 * 5) == 0:
                    blink_dur_frames = random.randint(8, 12)
                    exp[i:i + blink_dur_frames, :4] += 1.0
        imgs = torch.cat([self.secc2video_model(batch['ref_head_img'], exp[i:i + 1], batch['camera'][i:i + 1])
                          for i in range(len(exp))])
        if inp['out_mode'] == 'concat_debug':  # upstream's default: five 512-wide panels
            imgs = torch.cat([imgs] * 5, dim=-1)
        elif inp['out_mode'] != 'final':
            raise NotImplementedError(inp['out_mode'])
        import imageio
        debug_name = 'demo.mp4'
        out_imgs = ((imgs.permute(0, 2, 3, 1) + 1) / 2 * 255).int().cpu().numpy().astype(np.uint8)
        writer = imageio.get_writer(debug_name, fps=25, format='FFMPEG', codec='h264')
        for i in range(len(out_imgs)):
            writer.append_data(out_imgs[i])
        writer.close()
        out_fname = 'infer_out/tmp/out.mp4' if inp['out_name'] == '' else inp['out_name']
        os.makedirs(os.path.dirname(out_fname) or '.', exist_ok=True)
        os.system(f"ffmpeg -i {debug_name} -i {self.wav16k_name} -y -v quiet -shortest {out_fname}")
        os.system(f"rm {debug_name}")
        os.system(f"rm {self.wav16k_name}")
        return out_fname

    @classmethod
    def example_run(cls, inp=None):
        infer_instance = cls(inp['a2m_ckpt'], inp['head_ckpt'], inp['torso_ckpt'], inp=inp)
        infer_instance.infer_once(inp)

    def save_wav16k(self, audio_name):
        wav16k_name = audio_name[:-4] + '_16k.wav'
        self.wav16k_name = wav16k_name
        os.system(f"ffmpeg -i {audio_name} -f wav -ar 16000 -v quiet -y {wav16k_name} -y")


if __name__ == '__main__':
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--a2m_ckpt", default='checkpoints/240210_real3dportrait_orig/audio2secc_vae', type=str)
    parser.add_argument("--head_ckpt", default='', type=str)
    parser.add_argument("--torso_ckpt", default='checkpoints/240210_real3dportrait_orig/secc2plane_torso_orig',
                        type=str)
    parser.add_argument("--src_img", default='data/raw/examples/Macron.png', type=str)
    parser.add_argument("--bg_img", default='', type=str)
    parser.add_argument("--drv_aud", default='data/raw/examples/Obama_5s.wav', type=str)
    parser.add_argument("--drv_pose", default='data/raw/examples/May_5s.mp4', type=str)
    parser.add_argument("--blink_mode", default='period', type=str)
    parser.add_argument("--temperature", default=0.2, type=float)
    parser.add_argument("--mouth_amp", default=0.45, type=float)
    parser.add_argument("--head_torso_threshold", default=None, type=float)
    parser.add_argument("--out_name", default='')
    parser.add_argument("--out_mode", default='concat_debug')
    parser.add_argument("--map_to_init_pose", default='True')
    parser.add_argument("--seed", default=None, type=int)
    parser.add_argument("--min_face_area_percent", default=0.2, type=float)
    parser.add_argument("--low_memory_usage", action='store_true')
    args = parser.parse_args()
    inp = {'a2m_ckpt': args.a2m_ckpt, 'head_ckpt': args.head_ckpt, 'torso_ckpt': args.torso_ckpt,
           'src_image_name': args.src_img, 'bg_image_name': args.bg_img, 'drv_audio_name': args.drv_aud,
           'drv_pose_name': args.drv_pose, 'blink_mode': args.blink_mode, 'temperature': args.temperature,
           'mouth_amp': args.mouth_amp, 'out_name': args.out_name, 'out_mode': args.out_mode,
           'map_to_init_pose': args.map_to_init_pose, 'head_torso_threshold': args.head_torso_threshold,
           'seed': args.seed, 'min_face_area_percent': args.min_face_area_percent,
           'low_memory_usage': args.low_memory_usage}
    GeneFace2Infer.example_run(inp)
