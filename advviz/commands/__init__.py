"""CLI commands that belong to one feature area. Each module defines
``add_parsers(sub, eval_parser)`` and the ``cmd_*`` functions it sets as ``func``.

- ``attack``: ``advviz inspect`` and ``advviz eval --attack`` (adversaries issue)
- ``rar``: ``advviz reconstruct`` (CARL/RAR issue)
- ``analysis``: ``lm``, ``perplexity``, ``compare``, ``project``, ``report`` (analysis issue)
- ``words``: ``advviz words`` (the word atlas)
- ``app``: ``advviz app`` (Streamlit)
- ``augment``: ``advviz augment`` (label-free adversaries issue)
- ``transfer``: ``advviz import`` / ``advviz export`` (Hugging Face models in and out)
"""

from . import analysis, app, attack, augment, rar, transfer, words

COMMAND_MODULES = [attack, rar, analysis, words, app, augment, transfer]
