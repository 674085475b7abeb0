import pytest
import torch
import torchaudio

from stream.resample import StreamResampler


@pytest.mark.parametrize("orig,new", [(22050, 16000), (22050, 48000), (24000, 16000), (16000, 16000)])
def test_streamed_resampling_equals_whole(orig, new):
    torch.manual_seed(0)
    x = torch.randn(orig + 1234)
    whole = torchaudio.functional.resample(x, orig, new)
    r = StreamResampler(orig, new)
    parts, i, g = [], 0, torch.Generator().manual_seed(1)
    while i < len(x):
        k = int(torch.randint(1, 2500, (), generator=g))
        parts.append(r.push(x[i : i + k]))
        i += k
    parts.append(r.finish())
    got = torch.cat(parts)
    assert got.shape == whole.shape
    assert (got - whole).abs().max() < 1e-3
