"""The annotation store, moved to :mod:`core.annotations.store` (this package
re-exports its names while the module is being split)."""

from . import store as _store

globals().update({k: v for k, v in vars(_store).items() if not k.startswith("__")})
__all__ = _store.__all__
