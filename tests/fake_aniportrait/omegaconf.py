"""Stand-in for omegaconf: YAML as nested dicts with attribute access."""
import yaml


class DictConfig(dict):
    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError as e:
            raise AttributeError(k) from e


def _wrap(x):
    if isinstance(x, dict):
        return DictConfig({k: _wrap(v) for k, v in x.items()})
    return x


class OmegaConf:
    @staticmethod
    def load(path):
        with open(path) as f:
            return _wrap(yaml.safe_load(f))

    @staticmethod
    def to_container(cfg):
        return {k: OmegaConf.to_container(v) if isinstance(v, dict) else v for k, v in cfg.items()}
