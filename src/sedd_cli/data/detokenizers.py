"""Detokenizers: undo the tokenization that published corpora ship with (sedd-spec §7.1 step 2).

The rule sets of GPT-2 / Megatron-style evaluation: the perplexity protocols read WikiText, PTB,
One Billion Words and LAMBADA through them so that a model sees ordinary text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .sources import HUB_SOURCES

__all__ = ["detokenize", "wikitext_detokenize", "ptb_detokenize", "lm1b_detokenize", "lambada_detokenize"]


def wikitext_detokenize(text: str) -> str:
    """Undo WikiText's tokenization: ``@-@``/``@,@``/``@.@`` joins, spaces before punctuation,
    inside brackets and quotes, spaced ``= = =`` headings, ``°`` spacing, `` N `` -> `` 1 ``."""
    x = text.replace("s '", "s'")
    x = re.sub(r"/' [0-9]/", r"/'[0-9]/", x)
    x = x.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    for p in (":", ";", ".", "!", "?", ","):
        x = x.replace(f" {p} ", f"{p} ")
    x = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", x)
    x = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", x)
    x = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", x)
    x = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', x)
    x = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", x)
    x = x.replace("= = = =", "====").replace("= = =", "===").replace("= =", "==")
    x = x.replace(" \u00b0 ", "\u00b0")
    x = x.replace(" \n", "\n").replace("\n ", "\n")
    x = x.replace(" N ", " 1 ")
    x = x.replace(" 's", "'s")
    return x


def ptb_detokenize(text: str) -> str:
    """Undo Penn Treebank tokenization: `` 's``, `` n't``, ``s ' ``, ``\\/`` -> ``/``, the number
    placeholder `` N `` -> `` 1 `` (repeated, for runs), ``$ 1`` / ``# 1``, ``<unk>`` -> ``?``."""
    x = text.replace(" 's", "'s").replace("s ' ", "s' ").replace(" n't", "n't")
    x = x.replace(" \n ", "\n").replace("\\/", "/")
    for _ in range(10):  # overlapping matches: " N N N " needs more than one pass
        x = x.replace(" N ", " 1 ")
    x = x.replace("$ 1", "$1").replace("# 1", "#1")
    x = x.replace("<unk>", "?")
    return x


def lm1b_detokenize(text: str) -> str:
    """Undo One Billion Words tokenization: split URLs, spaces before ``. ? ! , : ;``, around
    ``/``, inside quotes and brackets, after ``$`` and ``£``, before apostrophes."""
    x = text.replace("http : / / ", "http://").replace("https : / / ", "https://")
    x = re.sub(r" '(\w+)", r"'\1", x)
    x = re.sub(r" (\w+) \. ", r" \1. ", x)
    x = re.sub(r" (\w+) \.$", r" \1.", x)
    x = x.replace(" ? ", "? ")
    x = re.sub(r" \?$", "?", x)
    x = x.replace(" ! ", "! ")
    x = re.sub(r" \!$", "!", x)
    x = x.replace(" , ", ", ").replace(" : ", ": ").replace(" ; ", "; ").replace(" / ", "/")
    x = re.sub(r"\" ([^\"]+) \"", r'"\1"', x)
    x = re.sub(r"' ([^']+) '", r"'\1'", x)
    x = re.sub(r"\( ([^\(\)]+) \)", r"(\1)", x)
    x = re.sub(r"\[ ([^\[\]]+) \]", r"[\1]", x)
    x = x.replace("$ ", "$").replace("\u00a3 ", "\u00a3")
    return x


def lambada_detokenize(text: str) -> str:
    """Curly double quotes -> straight; strip; prepend a newline (the GPT-2 LAMBADA protocol)."""
    x = text.replace("\u201c", '"').replace("\u201d", '"')
    return "\n" + x.strip()


DETOKENIZERS: dict[str, Callable[[str], str]] = {
    "wikitext": wikitext_detokenize,
    "ptb": ptb_detokenize,
    "lm1b": lm1b_detokenize,
    "lambada": lambada_detokenize,
}


def detokenize(source_name: str, text: str) -> str:
    """Apply the detokenizer of `source_name` (a short name such as ``wikitext2`` or a rule-set
    name: wikitext, ptb, lm1b, lambada) to `text`; other sources return `text` unchanged."""
    rules = HUB_SOURCES[source_name].detokenizer if source_name in HUB_SOURCES else source_name
    fn = DETOKENIZERS.get(rules or "")
    return fn(text) if fn is not None else text
