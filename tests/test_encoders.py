"""harlib.encoders: shapes and feature sizes, PatchTST sees all 250 samples, frame preparation, local weights."""
import pytest
import torch
from harlib.encoders import (PRESETS, PatchTSTEncoder, CNNGRUEncoder, ResNet1DEncoder, VideoMAEEncoder,
                             CLIPFrameEncoder, build_imu_encoder, build_video_encoder, prepare_frames,
                             pick_frames, pad_to_patches, CLIP_MEAN, CLIP_STD)


# one intra-op thread: see conftest.py

torch.manual_seed(0)
X = torch.randn(2, 250, 6)
V = torch.randint(0, 256, (2, 10, 40, 40, 3), dtype=torch.uint8)


@pytest.mark.parametrize('name', ['patchtst', 'cnn_gru', 'resnet'])
@pytest.mark.parametrize('preset', ['tiny', 'small'])
def test_imu_encoders_shapes(name, preset):
    e = build_imu_encoder(dict(name=name, **PRESETS[preset][name]))
    f = e(X)
    assert f.shape == (2, e.feature_dim) and torch.isfinite(f).all()
    f.sum().backward()


def test_patchtst_paper_feature_dim():
    e = PatchTSTEncoder(**PRESETS['paper']['patchtst'])
    assert e.feature_dim == 6 * 128 and e.num_patches == 16 and e.length == 256


@pytest.mark.parametrize('i', [0, 5, 9, 240, 244, 249])
def test_patchtst_uses_every_sample(i):
    e = PatchTSTEncoder(**PRESETS['tiny']['patchtst']).eval()
    x2 = X.clone(); x2[:, i] += 0.5
    assert (e(X) - e(x2)).abs().max() > 1e-6


def test_patchtst_channels_independent_until_flatten():
    e = PatchTSTEncoder(**PRESETS['tiny']['patchtst']).eval()
    x2 = X.clone(); x2[:, :, 3] += 1.0
    d = (e(X) - e(x2)).abs().view(2, 6, -1).amax(-1)
    assert (d[:, 3] > 1e-6).all() and (d[:, [0, 1, 2, 4, 5]] < 1e-6).all()


def test_patchtst_std_scaling_option():
    e = PatchTSTEncoder(**PRESETS['tiny']['patchtst'], scaling='std').eval()
    torch.testing.assert_close(e(X), e(X * 3 + 1), atol=1e-4, rtol=1e-4)  # per-window scaling erases amplitude


def test_wrong_window_is_clear():
    for e in (PatchTSTEncoder(**PRESETS['tiny']['patchtst']), CNNGRUEncoder(**PRESETS['tiny']['cnn_gru'])):
        with pytest.raises(ValueError, match=r'\[B, 250, 6\]'): e(torch.randn(2, 250, 3))


def test_pad_to_patches():
    assert [pad_to_patches(n) for n in (16, 17, 240, 250, 256)] == [16, 32, 240, 256, 256]


def test_prepare_frames_resize_and_norm():
    px = prepare_frames(V, 32)
    assert px.shape == (2, 10, 3, 32, 32) and px.dtype == torch.float32
    grey = torch.full((1, 2, 8, 8, 3), 128, dtype=torch.uint8)
    out = prepare_frames(grey, 16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    torch.testing.assert_close(out, torch.full_like(out, (128 / 255 - 0.5) / 0.5))
    with pytest.raises(ValueError, match='uint8'): prepare_frames(torch.zeros(2, 10, 3, 8, 8, dtype=torch.uint8), 8)
    assert pick_frames(V, 3).shape[1] == 3 and torch.equal(pick_frames(V, 3)[:, 0], V[:, 0])


def test_prepare_frames_layouts():
    "VideoMAE's [B, T, 3, S, S] clip and CLIP's middle frame, from small uint8 clips (moved here from harlib.video)."
    v = torch.randint(0, 255, (2, 10, 32, 32, 3), dtype=torch.uint8)
    assert prepare_frames(v, 224).shape == (2, 10, 3, 224, 224)
    assert prepare_frames(v[:, 5:6], 224, CLIP_MEAN, CLIP_STD)[:, 0].shape == (2, 3, 224, 224)


@pytest.mark.parametrize('name', ['videomae', 'clip'])
def test_video_encoders(name):
    e = build_video_encoder(dict(name=name, **PRESETS['tiny'][name]))
    f = e(V)
    assert f.shape == (2, e.feature_dim)
    f.sum().backward()


def test_clip_middle_frame_only():
    e = CLIPFrameEncoder(**PRESETS['tiny']['clip']).eval()
    v2 = V.clone(); v2[:, [0, 1, 9]] = 0
    torch.testing.assert_close(e(V), e(v2))
    v3 = V.clone(); v3[:, 5] = 0
    assert (e(V) - e(v3)).abs().max() > 1e-6


def test_local_weights_roundtrip_and_errors(tmp_path):
    from transformers import CLIPModel, CLIPConfig, VideoMAEForVideoClassification
    vm = VideoMAEEncoder(**PRESETS['tiny']['videomae'])
    # a classification checkpoint (weights under `videomae.`) loads into the bare encoder
    full = VideoMAEForVideoClassification(vm.config); full.save_pretrained(tmp_path / 'vm')
    vm2 = VideoMAEEncoder(**PRESETS['tiny']['videomae'], pretrained=str(tmp_path / 'vm'))
    torch.testing.assert_close(vm2.model.encoder.layer[0].attention.attention.query.weight,
                               full.videomae.encoder.layer[0].attention.attention.query.weight)
    with pytest.raises(ValueError, match='do not fit'):
        VideoMAEEncoder(**{**PRESETS['tiny']['videomae'], 'hidden_size': 48}, pretrained=str(tmp_path / 'vm'))
    with pytest.raises(FileNotFoundError, match='never downloads'):
        VideoMAEEncoder(**PRESETS['tiny']['videomae'], pretrained=str(tmp_path / 'nope'))
    # a full CLIPModel folder (as openai/clip-vit-base-patch32 ships) loads into the vision tower
    ce = CLIPFrameEncoder(**PRESETS['tiny']['clip'])
    cfg = CLIPConfig(vision_config=ce.config.to_dict(), text_config=dict(hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32), projection_dim=32)
    cm = CLIPModel(cfg); cm.save_pretrained(tmp_path / 'clip')
    ce2 = CLIPFrameEncoder(**PRESETS['tiny']['clip'], pretrained=str(tmp_path / 'clip'))
    torch.testing.assert_close(ce2.model.visual_projection.weight, cm.visual_projection.weight)


def test_unknown_names():
    with pytest.raises(ValueError, match='unknown IMU encoder'): build_imu_encoder(dict(name='tcn'))
    with pytest.raises(ValueError, match='unknown video encoder'): build_video_encoder(dict(name='x3d'))
