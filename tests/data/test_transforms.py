import torch

from dimctl.data.transforms import normalise, random_crop, random_hflip


def test_normalise_maps_to_minus_one_one():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2)
    assert normalise(x).flatten().tolist() == [-1.0, 1.0]


def test_random_crop_takes_shifted_windows_of_the_padded_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    out = random_crop(x, 2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for n in range(2):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(padded[n, :, dy:dy + 8, dx:dx + 8], out[n])]
        assert found, "each output must be one window of its own padded image"
    assert torch.equal(random_crop(x, 0), x)


def test_random_hflip_mirrors_some_images_only():
    x = torch.randn(64, 1, 4, 4)
    out = random_hflip(x, generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54
