"""Worker hooks for the fake upstream (the test counterpart of ``baselines/<name>/worker.py``)."""

from __future__ import annotations

from kdbench.runtime.hooks import WorkerHooks


class FakeHooks(WorkerHooks):
    packages = ("numpy", "av")

    def load(self) -> None:
        import fake_talker  # the upstream module, on sys.path from the source tree

        self.upstream = fake_talker
        self.model = fake_talker.load_model("ckpt/model.npy")  # relative: the cwd is the source tree

    def generate(self, image, audio, out_dir):
        hang_below = int(self.options.get("hang_below_frames", 0))
        if hang_below:  # a hung upstream call on short clips (the client's clip_timeout must end it)
            import time
            import wave

            with wave.open(str(audio)) as w:
                if w.getnframes() * 25 // w.getframerate() < hang_below:
                    time.sleep(3600)
        self.upstream.render(self.model, str(image), str(audio), str(out_dir),
                             crash_below_frames=int(self.options.get("crash_below_frames", 0)))
        return None  # the worker discovers <out_dir>/<timestamp>.mp4
