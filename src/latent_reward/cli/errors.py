"""The command line's one error path.

User errors (bad options, bad files or folders, damaged stores or probes, unreachable models and
datasets, a full disk, host or GPU memory running out) print one line on stderr and exit 2. Anything
else is a bug: it prints its last frames and says how to see the whole trace (`--debug` or
LATENT_REWARD_DEBUG=1).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback

from latent_reward.errors import UserError

DEBUG_ENV = "LATENT_REWARD_DEBUG"
OUT_OF_MEMORY = (
    "out of memory; use smaller batches (--batch-tokens), fewer positions (--positions) or layers (extract "
    "--layers), spread the model over devices (--device-map auto), a smaller --dtype (bfloat16), or for the "
    "analysis of wide states a smaller --sketch-dim (and its fits on the CPU: --analysis-device cpu)"
)


def _quiet_libraries() -> None:
    """Our progress bar and messages are the ones that matter; silence the libraries' own."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("transformers", "huggingface_hub", "datasets", "urllib3", "httpx", "filelock"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run_app(app, argv: list[str] | None = None) -> None:
    """Run the typer app with the one error path."""
    import pydantic
    from typer.exceptions import Abort, Exit, TyperException

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    _quiet_libraries()
    try:
        app(args=args, standalone_mode=False, prog_name="latent-reward")
    except UserError as error:
        _fail(str(error))
    except TyperException as error:  # click's usage errors, vendored by typer
        _usage_error(error)
    except Exit as error:
        sys.exit(error.exit_code)
    except (Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        _fail(f"invalid value for {'.'.join(str(part) for part in first['loc'])}: {first['msg']}")
    except OSError as error:
        if debug or error.errno not in (
            errno.ENOSPC,
            errno.EACCES,
            errno.EROFS,
            errno.EDQUOT,
            errno.ENOENT,
            errno.EISDIR,
            errno.ENOTDIR,
        ):
            _bug(error, debug)
        _fail(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))
    except Exception as error:  # a bug (show where, briefly), unless memory ran out
        if _out_of_memory(error) and not debug:
            _fail(OUT_OF_MEMORY)
        _bug(error, debug)


def _out_of_memory(error: Exception) -> bool:
    """Host memory (MemoryError) or an accelerator's (torch.OutOfMemoryError; torch is loaded if it raised one)."""
    torch = sys.modules.get("torch")
    return isinstance(error, MemoryError) or (torch is not None and isinstance(error, torch.OutOfMemoryError))


def _usage_error(error) -> None:
    if type(error).__name__ == "NoArgsIsHelpError":
        error.show()
        sys.exit(2)
    context = getattr(error, "ctx", None)
    where = f" (see '{context.command_path} --help')" if context is not None else ""
    _fail(f"{error.format_message()}{where}", getattr(error, "exit_code", 2) or 2)


def _bug(error: BaseException, debug: bool) -> None:
    if debug:
        raise error
    frames = traceback.format_exception(type(error), error, error.__traceback__, limit=-4)
    sys.stderr.write("".join(frames))
    print(f"this is a bug in latent-reward (rerun with --debug or {DEBUG_ENV}=1 for the whole trace)", file=sys.stderr)
    sys.exit(1)
