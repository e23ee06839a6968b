"""harlib.models: every kind builds and trains a step offline, the configs and feature sizes, freezing,
classifier features, and the checkpoint format (rebuild from the file alone, prefixes, atomic write, errors)."""
import os
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from harlib.losses import create_loss
from harlib.models import (build_model, model_config, Classifier, CrossModalModel, save_checkpoint,
                           load_checkpoint, read_checkpoint, ProjectionHead, KINDS)


# one intra-op thread: see conftest.py

torch.manual_seed(0)
IMU = torch.randn(4, 250, 6)


def video(size=32, t=10):
    return torch.randint(0, 256, (4, t, size, size, 3), dtype=torch.uint8)


def kw(kind): return {'n_classes': 3} if kind == 'classifier' else {}


def step(m, kind, vid):
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    if kind in ('cross', 'imu2clip'): loss = create_loss(m.config['loss'])(**m(IMU, vid))
    elif kind == 'imu_mae': loss = m(IMU)['loss']
    else: loss = F.cross_entropy(m(IMU), torch.tensor([0, 1, 2, 0]))
    opt.zero_grad(); loss.backward(); opt.step()
    return loss.item()


@pytest.mark.parametrize('kind', list(KINDS))
@pytest.mark.parametrize('preset', ['tiny', 'small'])
def test_every_kind_trains_a_step(kind, preset):
    m = build_model(kind, preset, **kw(kind))
    assert torch.isfinite(torch.tensor(step(m, kind, video(48))))


def test_paper_sizes():
    c = build_model('cross', 'paper')
    assert (c.imu_feature_dim, c.video_feature_dim, c.embed_dim) == (768, 768, 512)
    assert c.video_encoder.config.num_frames == 10 and c.video_encoder.config.image_size == 224
    n = sum(p.numel() for p in c.video_encoder.parameters())
    assert 85e6 < n < 88e6   # VideoMAE-base
    i = build_model('imu2clip', 'paper')
    assert (i.imu_feature_dim, i.video_feature_dim) == (512, 512)
    assert i.video_encoder.config.patch_size == 32   # ViT-B/32


def test_cross_outputs():
    m = build_model('cross', 'tiny')
    out = m(IMU, video())
    torch.testing.assert_close(out['imu_emb'].norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(out['video_emb'].norm(dim=-1), torch.ones(4))
    assert abs(out['logit_scale'].item() - 10) < 1e-4 and out['logit_bias'].item() == -10
    assert m.log_scale.requires_grad and m.logit_bias.requires_grad
    assert build_model('cross', 'tiny', loss='softmax').logit_bias is None


def test_freeze_video():
    m = build_model('cross', 'tiny', freeze_video=True).train()
    assert not m.video_encoder.training and m.imu_encoder.training
    step(m, 'cross', video())
    assert all(p.grad is None for p in m.video_encoder.parameters())
    assert any(p.grad is not None for p in m.video_head.parameters())


def test_video_encoder_choice_and_overrides():
    m = build_model('cross', 'tiny', video='clip', imu='cnn_gru', embed_dim=16)
    assert type(m.video_encoder).__name__ == 'CLIPFrameEncoder' and m.embed_dim == 16
    assert m(IMU, video())['imu_emb'].shape == (4, 16)
    with pytest.raises(ValueError, match='unknown model kind'): build_model('simclr')
    with pytest.raises(ValueError, match='unknown encoder'): build_model('cross', 'tiny', imu='lstm')


def test_imu_mae_masks_40_percent_and_learns():
    torch.manual_seed(1)
    m = build_model('imu_mae', 'tiny')
    o = m(IMU)
    assert o['mask'].shape == (4, 6, 16) and o['mask'].sum(-1).eq(7).all()   # int(16 * 0.6) = 9 kept
    assert o['pred'].shape == o['target'].shape == (4, 6, 16, 16)
    t = torch.arange(250.) / 50
    smooth = torch.stack([torch.sin(2 * torch.pi * (0.5 + c) * t + ph) for ph in range(4) for c in range(6)]).view(4, 6, 250)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = m(smooth.transpose(1, 2))['loss']; opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.92 * sum(losses[:5]) / 5   # masked sinusoids: predictable from neighbours
    with pytest.raises(ValueError, match='no projection head'): m.encode_imu(IMU, project=True)


def test_cross_learns_on_a_fixed_batch():
    torch.manual_seed(2)
    m, v = build_model('cross', 'tiny'), video()
    losses = [step(m, 'cross', v) for _ in range(25)]
    assert losses[-1] < losses[0]


def test_classifier_features():
    m = build_model('cross', 'tiny')
    pre, post = Classifier(m, 5), Classifier(m, 5, feature='post', freeze=True)
    assert pre.feature_dim == m.imu_feature_dim and post.feature_dim == m.embed_dim
    assert not hasattr(pre, 'video_encoder')
    assert [n for n, p in post.named_parameters() if p.requires_grad] == ['head.weight', 'head.bias']
    m.eval(); post.eval()
    torch.testing.assert_close(post.features(IMU), m.encode_imu(IMU, normalize=False))
    with pytest.raises(ValueError, match="'pre' or 'post'"): Classifier(m, 5, feature='mid')
    bare = Classifier(m.imu_encoder, 4)   # a bare encoder works for 'pre'
    assert bare(IMU).shape == (4, 4)


@pytest.mark.parametrize('kind', list(KINDS))
def test_checkpoint_roundtrip(kind, tmp_path):
    m = build_model(kind, 'tiny', **kw(kind)).eval()
    p = save_checkpoint(tmp_path / 'sub' / 'm.pt', m, epoch=2)
    assert os.listdir(tmp_path / 'sub') == ['m.pt']   # no temp file left behind
    m2, ck = load_checkpoint(p)
    assert ck['epoch'] == 2 and ck['config'] == m.config and 'harlib_version' in ck
    m2.eval()
    torch.manual_seed(0); a = m(IMU, video()) if kind in ('cross', 'imu2clip') else m(IMU)
    torch.manual_seed(0); b = m2(IMU, video()) if kind in ('cross', 'imu2clip') else m2(IMU)
    a, b = (a['imu_emb'], b['imu_emb']) if kind in ('cross', 'imu2clip') else \
           (a['loss'], b['loss']) if kind == 'imu_mae' else (a, b)
    torch.testing.assert_close(a, b)


def test_checkpoint_of_probe_on_cross_model(tmp_path):
    m = build_model('cross', 'tiny')
    clf = Classifier(m, 3, feature='post').eval()
    c2, _ = load_checkpoint(save_checkpoint(tmp_path / 'c.pt', clf))
    torch.testing.assert_close(c2.eval()(IMU), clf(IMU))


class Wrapper(nn.Module):
    def __init__(self, m, attr): super().__init__(); setattr(self, attr, m)


@pytest.mark.parametrize('attr', ['module', '_orig_mod'])
def test_checkpoint_strips_wrapper_prefixes(attr, tmp_path):
    m = build_model('classifier', 'tiny', n_classes=2)
    p = save_checkpoint(tmp_path / 'w.pt', Wrapper(Wrapper(m, attr), 'module'))
    assert not any(k.startswith(('module.', '_orig_mod.')) for k in read_checkpoint(p)['state_dict'])
    load_checkpoint(p)


def test_checkpoint_ignores_pretrained_folder_on_load(tmp_path):
    m = build_model('cross', 'tiny')
    m.video_encoder.model.save_pretrained(tmp_path / 'vm')
    m2 = build_model('cross', 'tiny', pretrained=str(tmp_path / 'vm'))
    p = save_checkpoint(tmp_path / 'c.pt', m2)
    (tmp_path / 'vm' / 'config.json').unlink()    # the folder is gone: the checkpoint alone suffices
    load_checkpoint(p)


def test_checkpoint_errors(tmp_path):
    m = build_model('imu_mae', 'tiny')
    torch.save({'model': m.state_dict()}, tmp_path / 'foreign.pt')
    with pytest.raises(ValueError, match='not a harlib checkpoint'): load_checkpoint(tmp_path / 'foreign.pt')
    (tmp_path / 'junk.pt').write_text('hello')
    with pytest.raises(ValueError, match='not a readable torch file'): load_checkpoint(tmp_path / 'junk.pt')
    with pytest.raises(FileNotFoundError): load_checkpoint(tmp_path / 'none.pt')
    ck = read_checkpoint(save_checkpoint(tmp_path / 'm.pt', m))
    ck['config']['imu']['d_model'] = 24; torch.save(ck, tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match='does not match its config|cannot rebuild'): load_checkpoint(tmp_path / 'bad.pt')
    ck['format_version'] = 99; torch.save(ck, tmp_path / 'new.pt')
    with pytest.raises(ValueError, match='newer'): load_checkpoint(tmp_path / 'new.pt')
    with pytest.raises(ValueError, match='harlib model'): save_checkpoint(tmp_path / 'x.pt', nn.Linear(2, 2))


def test_projection_head_structure():
    h = ProjectionHead(768, 512)
    assert [type(x).__name__ for x in h.children()] == ['Linear', 'Linear', 'Dropout', 'LayerNorm']
    assert h.drop.p == 0.1 and h.proj.in_features == 768 and h.fc.out_features == 512


def test_classifier_copies_encoder_by_default():
    m = build_model('cross', 'tiny')
    before = {k: v.clone() for k, v in m.imu_encoder.state_dict().items()}
    clf = Classifier(m, 3, feature='post')
    opt = torch.optim.SGD(clf.parameters(), lr=0.5)
    F.cross_entropy(clf(IMU), torch.tensor([0, 1, 2, 0])).backward(); opt.step()
    for k, v in m.imu_encoder.state_dict().items(): torch.testing.assert_close(v, before[k])
    shared = Classifier(m, 3, share=True)
    assert shared.imu_encoder is m.imu_encoder


def test_imu_pretrained_is_refused():
    with pytest.raises(ValueError, match='random init'): build_model('cross', 'tiny', imu=dict(pretrained='/x'))


def test_forward_from_cached_video_features():
    m = build_model('cross', 'tiny', freeze_video=True).eval()
    v = video()
    feats = m.video_features(v)
    assert feats.shape == (4, m.video_feature_dim) and not feats.requires_grad
    a, b = m(IMU, v), m(IMU, video_features=feats)
    torch.testing.assert_close(a['video_emb'], b['video_emb'])
    scale, bias = m.logit_params()
    torch.testing.assert_close(scale, a['logit_scale']) ; assert bias is m.logit_bias


def test_linear_probe_keeps_encoder_statistics():
    m = build_model('cross', 'tiny')
    clf = Classifier(m, 3, freeze=True).train()
    before = {k: v.clone() for k, v in clf.imu_encoder.state_dict().items()}
    opt = torch.optim.SGD([p for p in clf.parameters() if p.requires_grad], lr=0.1)
    F.cross_entropy(clf(IMU * 3 + 1), torch.tensor([0, 1, 2, 0])).backward(); opt.step()
    for k, v in clf.imu_encoder.state_dict().items(): torch.testing.assert_close(v, before[k])   # incl. BN running stats
    clf.freeze_encoder(False).train()
    assert clf.imu_encoder.training and all(p.requires_grad for p in clf.parameters())
