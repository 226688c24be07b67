"""Keep the tools' own chatter out of a samedge run (pure Python)."""
from __future__ import annotations

import logging

# What the tools print on import and while they work, none of it about the user's run: coremltools' untested
# torch / scikit-learn versions and missing macOS proxies, NNCF's progress, ORT quantizer advice. -v shows it.
_TOOL_LOGGERS = ("coremltools", "nncf", "openvino")
_ROOT_NOISE = ("Please consider to run pre-processing", "Please consider pre-processing")


def _not_tool_noise(record: logging.LogRecord) -> bool:
    return not (record.name == "root" and record.getMessage().startswith(_ROOT_NOISE))


def quiet_tools() -> None:
    for name in _TOOL_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    root = logging.getLogger()
    if _not_tool_noise not in root.filters:  # main() may run many times in one process (tests)
        root.addFilter(_not_tool_noise)  # the ORT quantizer logs through the root logger
