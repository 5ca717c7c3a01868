"""dimctl: Deep InfoMax (Hjelm et al., ICLR 2019) as a command-line toolkit, and from Python:

    import dimctl
    encoder = dimctl.load_encoder("runs/dim-l/encoder.safetensors")
    y = encoder(encoder.preprocess(images))
    features = dimctl.load_features("features.h5")

(dimctl/api.py). The names load on first use, so ``import dimctl`` (and every command's start-up)
imports no torch.
"""

__version__ = "0.1.0"
__all__ = ["Encoder", "load_encoder", "load_features", "__version__"]


def __getattr__(name: str):
    if name in ("Encoder", "load_encoder", "load_features"):
        from dimctl import api

        return getattr(api, name)
    raise AttributeError(f"module 'dimctl' has no attribute {name!r}")
