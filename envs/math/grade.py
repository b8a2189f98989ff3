"""``grade(response, answer) -> bool``: is a math response's final answer equal to the reference?

The final answer is taken from the response (last ``\\boxed{...}``, else the text after the last ``####``, else
"the answer is ...", else the last number), normalised (thousands commas, currency, percent, units in
``\\text{}``, ``\\left``/``\\right``, trailing zeros/periods) and compared mathematically: both sides are read by a
small recursive-descent parser (numbers, + - * / ^, parentheses, ``\\frac``, ``\\sqrt``, ``\\pi``, single-letter
variables) into exact sympy expressions. Nothing is ever passed to ``eval`` (sympy's ``parse_expr`` evals
generated code, so it is not used). Control and format characters in model text (NUL, ESC, zero-width
spaces, ...) are stripped before anything is parsed. Hostile input (huge strings, deep nesting, giant powers)
returns False.
"""

from __future__ import annotations

import re
import unicodedata

MAX_RESPONSE_CHARS = 200_000
MAX_ANSWER_CHARS = 300
MAX_TOKENS = 200
MAX_EXPONENT = 64

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+)(?![\d,])")


def strip_control(text: str) -> str:
    """``text`` without control and format characters (Unicode category C*); newlines, tabs and CR stay.

    A model's NUL or zero-width space inside ``#### 4`` would otherwise make a right answer unreadable.
    """
    return "".join(c for c in text if c in "\n\t\r" or not unicodedata.category(c).startswith("C"))


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the ``{...}`` group opening at ``text[start]`` and the index after it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``."""
    at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if at < 0:
        return None
    brace = text.find("{", at)
    if brace < 0:
        return None
    group = _braced(text, brace)
    return group[0] if group else None


def extract_answer(text: str) -> str | None:
    """The final answer written in ``text`` (see module doc for the order of rules), or None."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().split("\n")[0].strip()
    matches = re.findall(r"answer is[:\s]*([^\n]+)", text, flags=re.IGNORECASE)
    if matches:
        return matches[-1].strip().rstrip(".")
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _strip_text_groups(s: str) -> str:
    """``\\text{...}``/``\\mbox{...}``: dropped when other content exists (units), kept when alone."""
    out, i = [], 0
    while i < len(s):
        m = re.match(r"\\(?:text|textbf|mbox|mathrm)\s*", s[i:])
        if m:
            group = _braced(s, i + m.end())
            if group:
                out.append("\x00" + group[0] + "\x00")
                i = group[1]
                continue
        out.append(s[i])
        i += 1
    joined = "".join(out)
    outside = re.sub("\x00[^\x00]*\x00", "", joined).strip()
    if outside:
        return re.sub("\x00[^\x00]*\x00", " ", joined)
    return joined.replace("\x00", "")


def _latex_to_plain(s: str) -> str:
    """Rewrites the LaTeX the parser understands into plain infix text."""
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    for _ in range(20):  # \frac{a}{b} -> ((a)/(b)), innermost first via repeated passes
        at = s.rfind("\\frac")
        if at < 0:
            break
        rest = s[at + 5 :].lstrip()
        offset = len(s) - len(rest)
        if rest[:1] == "{":
            num = _braced(s, offset)
            den = _braced(s, num[1]) if num else None
            if not num or not den:
                return s
            s = s[:at] + f"(({num[0]})/({den[0]}))" + s[den[1] :]
        elif len(rest) >= 2 and rest[0].isdigit() and rest[1].isdigit():  # \frac12
            s = s[:at] + f"(({rest[0]})/({rest[1]}))" + rest[2:]
        else:
            return s
    s = re.sub(r"\\sqrt\s*(\d)", r"sqrt(\1)", s)
    s = s.replace("\\sqrt", "sqrt")
    for old, new in (("\\cdot", "*"), ("\\times", "*"), ("\\div", "/"), ("\\pi", "pi"), ("^\\circ", ""),
                     ("\\circ", ""), ("\\infty", "oo")):
        s = s.replace(old, new)
    return s.replace("{", "(").replace("}", ")")


def normalize(answer: str) -> str:
    """Canonical text of an answer: no currency, commas, percent, spacing macros, units or trailing period."""
    s = answer.strip()
    s = _strip_text_groups(s)
    for junk in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "\\$", "$", "\\%", "%", "dfrac"):
        s = s.replace(junk, "" if junk != "dfrac" else "frac")
    s = re.sub(r"\b(dollars?|cents?|units?)\b", "", s, flags=re.IGNORECASE)
    s = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), s)
    s = s.strip().rstrip(".").strip()
    return s


_TOKEN = re.compile(r"\s*(?:(\d+\.\d*|\.\d+|\d+)|(sqrt|pi|oo)|([a-zA-Z])|(\*\*|[-+*/^()]))")


class _Parser:
    """Recursive descent over + - * / ^ ( ) numbers, sqrt, pi, single-letter symbols; builds sympy values."""

    def __init__(self, text: str) -> None:
        import sympy

        self.sp = sympy
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise ValueError(f"unexpected {text[pos:pos + 10]!r}")
            pos = m.end()
            number, word, letter, op = m.groups()
            if number is not None:
                self.tokens.append(("num", number))
            elif word is not None:
                self.tokens.append(("word", word))
            elif letter is not None:
                self.tokens.append(("sym", letter))
            else:
                self.tokens.append(("op", "^" if op == "**" else op))
            if len(self.tokens) > MAX_TOKENS:
                raise ValueError("too long")
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise ValueError(f"expected {value!r}")
        self.i += 1
        return tok

    def parse(self):
        value = self.expr(0)
        if self.peek() is not None:
            raise ValueError("trailing tokens")
        return value

    def expr(self, depth: int):
        value = self.term(depth)
        while (tok := self.peek()) and tok[1] in "+-" and tok[0] == "op":
            self.take()
            rhs = self.term(depth)
            value = value + rhs if tok[1] == "+" else value - rhs
        return value

    def term(self, depth: int):
        value = self.unary(depth)
        while (tok := self.peek()) and ((tok[0] == "op" and tok[1] in "*/") or tok[0] != "op" or tok[1] == "("):
            if tok[0] == "op" and tok[1] in "*/":
                self.take()
                rhs = self.unary(depth)
                if tok[1] == "/":
                    if rhs == 0:
                        raise ValueError("division by zero")
                    value = value / rhs
                else:
                    value = value * rhs
            else:  # implicit multiplication: 2pi, 3sqrt(2), 2x, 2(3)
                value = value * self.unary(depth)
        return value

    def unary(self, depth: int):
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in "+-":
            self.take()
            value = self.unary(depth + 1)
            return -value if tok[1] == "-" else value
        return self.power(depth)

    def power(self, depth: int):
        base = self.atom(depth)
        tok = self.peek()
        if tok and tok == ("op", "^"):
            self.take()
            exponent = self.unary(depth + 1)
            if not exponent.is_number or abs(float(exponent)) > MAX_EXPONENT:
                raise ValueError("exponent too large or symbolic")
            return self.sp.Pow(base, exponent)
        return base

    def atom(self, depth: int):
        if depth > 50:
            raise ValueError("too deep")
        kind, value = self.take()
        sp = self.sp
        if kind == "num":
            return sp.Rational(value.rstrip(".") or "0")
        if kind == "word":
            if value == "pi":
                return sp.pi
            if value == "oo":
                return sp.oo
            self.take("(")
            inner = self.expr(depth + 1)
            self.take(")")
            return sp.sqrt(inner)
        if kind == "sym":
            return sp.Symbol(value)
        if value == "(":
            inner = self.expr(depth + 1)
            self.take(")")
            return inner
        raise ValueError(f"unexpected {value!r}")


def to_expression(answer: str):
    """The sympy value of a normalised answer, or None when it is not plain arithmetic."""
    try:
        return _Parser(_latex_to_plain(answer)).parse()
    except (ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _equal(a: str, b: str) -> bool:
    if a == b:
        return True
    x, y = to_expression(a), to_expression(b)
    if x is None or y is None:
        squash = lambda s: re.sub(r"\s+", "", s).lower()  # noqa: E731
        return squash(a) == squash(b)
    if x.free_symbols or y.free_symbols:
        return bool((x - y).expand() == 0)
    try:
        fx, fy = float(x), float(y)
    except (TypeError, OverflowError):
        return bool(x == y)
    return abs(fx - fy) <= 1e-6 * max(1.0, abs(fy))


def grade(response: str, answer: str) -> bool:
    """True if the final answer in ``response`` equals ``answer`` (GSM8K ``#### N``, MATH ``\\boxed{}`` or plain).

    Never raises: anything malformed, oversized or unparseable that is not also textually equal is False.
    """
    try:
        if not isinstance(response, str) or not isinstance(answer, str) or len(response) > MAX_RESPONSE_CHARS:
            return False
        response, answer = strip_control(response), strip_control(answer)
        gold = extract_answer(answer) if ("\\boxed" in answer or "####" in answer) else answer
        given = extract_answer(response)
        if gold is None or given is None or len(given) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return False
        given, gold = normalize(given), normalize(gold)
        if "=" in given and "=" not in gold:  # "x = 5" against "5"
            given = given.rsplit("=", 1)[1].strip()
        if not given or not gold:
            return False
        given_parts, gold_parts = _split_top_level(given), _split_top_level(gold)
        if len(given_parts) != len(gold_parts):
            return False
        return all(_equal(g, r) for g, r in zip(given_parts, gold_parts, strict=True))
    except Exception:  # a grader must not crash a rollout; anything unexpected is simply wrong
        return False


def _split_top_level(s: str) -> list[str]:
    """``"(1, 2)"``/``"1, 2"`` -> ``["1", "2"]``; commas inside brackets are kept."""
    inner = s[1:-1] if len(s) > 1 and s[0] in "([" and s[-1] in ")]" and "," in s else s
    parts, depth, cur = [], 0, []
    for c in inner:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur).strip())
    return parts
