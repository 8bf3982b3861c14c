"""Evaluation metrics: FID/KID with pluggable feature networks, precision/recall and pixel FD, and the DigitsNet judge.

Names are resolved on first access (PEP 562), so ``import genforge.metrics`` stays cheap and
``python -m genforge.metrics.digits_net`` runs without a double-import warning. Heavy
dependencies (torchmetrics, scikit-learn, safetensors) are imported only when used.
"""

from importlib import import_module

_EXPORTS = {
    "DigitsNet": "digits_net",
    "class_histogram": "digits_net",
    "classes_covered": "digits_net",
    "load_digits_net": "digits_net",
    "predict_logits": "digits_net",
    "real_digits": "digits_net",
    "requested_label_fraction": "digits_net",
    "train_digits_net": "digits_net",
    "FEATURE_SPECS": "fid",
    "FIDEvaluator": "fid",
    "ImageFeatures": "fid",
    "extract_features": "fid",
    "feature_network": "fid",
    "fid_kid": "fid",
    "fid_kid_from_features": "fid",
    "frechet_distance": "fid",
    "generation_scores": "precision_recall",
    "pixel_frechet_distance": "precision_recall",
    "precision_recall": "precision_recall",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genforge.metrics' has no attribute {name!r}")
    value = getattr(import_module(f"genforge.metrics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
