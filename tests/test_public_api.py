"""The public API is explicit and sorted."""

import batching
import pipeline


def test_all_is_sorted_and_importable() -> None:
    for module in (pipeline, batching):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name
