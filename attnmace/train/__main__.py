"""``python -m attnmace.train`` (also under ``torchrun``) runs ``attnmace-train``."""

from .cli import train

if __name__ == "__main__":
    train()
