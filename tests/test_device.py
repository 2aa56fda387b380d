"""The device is resolved once and checked before work (issue 24)."""

import pytest
import torch

from ramac.device import resolve_device
from ramac.errors import UserError


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(" CPU ").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_is_refused_in_one_line_without_a_gpu(name):
    with pytest.raises(UserError, match=f"--device {name}: .* on this machine") as info:
        resolve_device(name)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu:0", "x" * 10_000])
def test_a_name_that_is_no_device_is_refused(name):
    with pytest.raises(UserError, match="not a device") as info:
        resolve_device(name)
    assert len(str(info.value)) < 200
