"""Backend switches that must leave the caller's settings as they were."""

import torch

from latent_reward.models.architecture import without_cudnn_attention


def test_cudnn_attention_is_off_inside_on_cuda_and_restored_after():
    # The flags exist in CPU builds too, so the switch is checked here; a CPU device changes nothing.
    assert torch.backends.cuda.cudnn_sdp_enabled()
    with without_cudnn_attention(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled()
    with without_cudnn_attention(torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled()


def test_a_backend_the_caller_switched_off_stays_off():
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        with without_cudnn_attention(torch.device("cuda")):
            assert not torch.backends.cuda.flash_sdp_enabled()
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_flash_sdp(True)
        torch.backends.cuda.enable_cudnn_sdp(True)
