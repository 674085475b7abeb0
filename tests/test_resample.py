import pytest
import torch
import torchaudio

from stream.audio.resample import StreamResampler


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


@pytest.mark.parametrize("orig,new", [(22050, 16000), (22050, 48000), (44100, 16000)])
def test_chunking_changes_no_bit(orig, new):
    """A live session's pushes and a render's chunks must give the same samples, not merely close ones."""
    torch.manual_seed(0)
    x = torch.randn(3 * orig + 777)

    def run(sizes):
        r, parts, i = StreamResampler(orig, new), [], 0
        for k in sizes:
            parts.append(r.push(x[i : i + k]))
            i += k
        return torch.cat([*parts, r.push(x[i:]), r.finish()])

    whole = run([])
    assert torch.equal(run([1] * 500 + [7919] * 5), whole)
    assert torch.equal(run([orig // 10] * 20), whole)
