"""Test helper: a file's SHA-256, to check that a refused command changed no file."""
import hashlib


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
