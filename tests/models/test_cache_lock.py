"""Two processes (parallel test workers, two commands) wanting the same bundled model make its cache once."""

import threading
import time

from latent_reward.models import loading


def test_two_callers_at_once_convert_the_bundled_model_once(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"weights")
    monkeypatch.setattr(loading, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(loading, "gguf_path", lambda name: gguf)
    converted = []

    def convert(source, folder, digest):
        converted.append(folder)
        time.sleep(0.5)  # long enough for the second caller to arrive while this one converts
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
        (folder / "SOURCE_SHA256").write_text(digest)

    monkeypatch.setattr(loading, "_convert", convert)
    found = []
    callers = [threading.Thread(target=lambda: found.append(loading.bundled_folder("tiny"))) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(converted) == 1 and len(found) == 2 and found[0] == found[1] == converted[0]
