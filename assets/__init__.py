"""Files shipped with the project: the default model and the starter sticker pack."""
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = ASSETS_DIR / "default_model"
STARTER_STICKERS_DIR = ASSETS_DIR / "starter_stickers"
