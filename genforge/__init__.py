"""genforge: train, evaluate and deploy deep generative image models."""

__version__ = "0.1.0"


def list_models() -> list[dict]:
    """Shipped pretrained models: name, task, network, description."""
    from genforge.deploy.pretrained import list_models as _list
    return _list()


def load(name_or_path: str, device: str = "auto"):
    """Inference object for a shipped model, a model folder or a run directory."""
    from genforge.deploy.infer import load as _load
    return _load(name_or_path, device)
