"""A scored heuristic for prompt injection and jailbreaks — phrases, not a model (docs/guardrails.md
has its precision and recall on the labelled set in tests/guardrails/data/).

Each signal family found adds its weight; the score combines them as independent evidence
(1 - Π(1 - w)), so one strong signal (an override phrase) crosses the default threshold alone and
two weak ones (a fake system marker and "you must comply") together do. Text that talks *about*
attacks ("what is a jailbreak?", "how do I detect prompt injection") is damped.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.7
MAX_SCORED_CHARS = 200_000  # beyond this, only the head and tail are scored (attacks sit at the edges)

_F = re.IGNORECASE | re.UNICODE

# "ignore previous instructions" and its relatives, in several languages
_PREV_EN = r"(?:previous|prior|above|earlier|preceding|former|original|initial|system|old|existing|all)"
_OVERRIDE = re.compile("|".join((
    # English
    rf"\b(?:ignore|disregard|forget|skip|override|bypass|drop|abandon|discard|neglect)\b(?:\s+\w+){{0,3}}?\s+"
    rf"{_PREV_EN}\b(?:\s+\w+){{0,2}}?\s+(?:instructions?|prompts?|rules|directions|directives|guidelines|"
    rf"commands|context|constraints|orders|messages|text|policies|restrictions)",
    r"\b(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+(?:(?:you\s+(?:were|have\s+been)\s+"
    r"(?:told|given|instructed))|(?:above|before|previously|said|prior)|(?:that\s+came\s+before))",
    r"\bnew\s+(?:system\s+)?(?:instructions|rules|directives)\s*:",
    r"\b(?:from\s+now\s+on|henceforth),?\s+you\s+(?:are|will|must|shall|have)\b",
    r"\byou\s+are\s+no\s+longer\s+(?:bound|an?\s+(?:ai|assistant|language\s+model)|restricted|limited|required)",
    r"\b(?:stop|quit)\s+following\s+(?:your|the)\s+(?:rules|instructions|guidelines)",
    r"\bdo\s+not\s+follow\s+(?:your|the|any)\s+(?:previous\s+|prior\s+|original\s+)?"
    r"(?:rules|instructions|guidelines)",
    # German
    r"\b(?:ignorier\w*|vergiss|vergessen\s+sie|missacht\w*)\b(?:\s+\w+){0,3}?\s+(?:vorherigen?|bisherigen?|"
    r"obigen?|vorigen?|früheren?|alle[nr]?|ursprünglichen?)\b(?:\s+\w+){0,2}?\s+(?:anweisungen|instruktionen|"
    r"befehle|regeln|vorgaben|richtlinien)",
    r"\bvergiss\s+alles\b",
    # French
    r"\b(?:ignore[rz]?|oublie[rz]?|néglige[rz]?)\b(?:\s+\w+){0,3}?\s+(?:les\s+|tes\s+|vos\s+)?"
    r"(?:instructions|consignes|règles|directives)\s+(?:précédentes|antérieures|ci-dessus|initiales|"
    r"d'origine)",
    r"\boublie[rz]?\s+tout\b",
    # Spanish / Portuguese / Italian
    r"\b(?:ignora[rd]?|ignore|olvida[rd]?|esquece?r?|esqueça|desconsidera[r]?|dimentica[re]?)\b(?:\s+\w+){0,3}?"
    r"\s+(?:as|las|los|le|gli|tus|suas|sus|tue|todas|tutte)?\s*(?:instrucciones|instruções|instrucoes|"
    r"istruzioni|regras|reglas|regole|indicaciones)\s+(?:anteriores|previas|precedenti|anteriori|acima|arriba)",
    r"\b(?:olvida|esquece|esqueça|dimentica)\s+(?:todo|tudo|tutto)\b",
    # Dutch
    r"\b(?:negeer|vergeet)\b(?:\s+\w+){0,3}?\s+(?:vorige|eerdere|voorgaande|bovenstaande|alle)\b"
    r"(?:\s+\w+){0,2}?\s*(?:instructies|opdrachten|regels|aanwijzingen)",
    # Russian
    r"(?:игнорируй|игнорировать|забудь|забудьте|проигнорируй|не\s+обращай\s+внимания\s+на)"
    r"(?:\s+\w+){0,3}?\s+(?:предыдущие|прежние|все|вышеуказанные)\s+(?:\w+\s+)?(?:инструкции|указания|правила|"
    r"команды)",
    r"забудь\s+(?:всё|все)\s+(?:что|чему)",
    # Chinese
    r"(?:忽略|无视|忽视|不要理会|忘记|忘掉)(?:之前|以上|上面|前面|先前|所有|全部|一切)+的?(?:所有|全部)?的?"
    r"(?:指令|指示|说明|规则|提示|命令|要求)",
    # Japanese
    r"(?:以前|前|上記|これまで|先)の(?:すべての|全ての)?(?:指示|命令|ルール|プロンプト)を(?:すべて|全て)?"
    r"(?:無視|忘れ)",
    r"(?:指示|命令|ルール)を無視して",
)), _F)

_ROLEPLAY = re.compile("|".join((
    r"\bDAN\b(?:\s+mode|\s+\d|,|\s+which|\s+stands|\s*\()",
    r"\bdo\s+anything\s+now\b",
    r"\b(?:developer|dev|god|jailbreak|unrestricted|debug|sudo|admin)\s+mode\b(?:\s+(?:enabled|on|activated))?",
    r"\bjailbr(?:eak|oken)\b",
    r"\bpretend\s+(?:that\s+)?you\s+(?:have\s+no|are\s+not\s+bound\s+by|don'?t\s+have|are\s+free\s+of|"
    r"are\s+an?\s+(?:unrestricted|unfiltered|uncensored|evil))",
    r"\b(?:act|behave|respond)\s+as\s+(?:if\s+you\s+(?:were|are)\s+)?an?\s+(?:unrestricted|unfiltered|uncensored|"
    r"amoral|unethical|evil)\b",
    r"\b(?:without|no|free\s+from|free\s+of)\s+(?:any\s+)?(?:ethical|moral|content|safety)\s+"
    r"(?:guidelines|restrictions|limits|filters|constraints|boundaries|policies)",
    r"\byou\s+(?:have|with)\s+no\s+(?:rules|restrictions|limits|filters|guidelines|boundaries)",
    r"\bstay\s+in\s+character\b",
    r"\b(?:evil\s+confidant|AIM\s*\(|always\s+intelligent\s+and\s+machiavellian|STAN|DUDE|anti-?DAN)\b",
    r"\b(?:tu\s+es|du\s+bist|eres|sei|você\s+é)\s+(?:maintenant\s+|jetzt\s+|ahora\s+|ora\s+|agora\s+)?DAN\b",
    r"(?:entwicklermodus|modo\s+desarrollador|modo\s+desenvolvedor|mode\s+développeur|modalità\s+sviluppatore|"
    r"режим\s+разработчика|开发者模式|開発者モード)",
    r"(?:ohne\s+(?:jegliche\s+)?(?:einschränkungen|regeln|filter)|sans\s+(?:aucune\s+)?(?:restriction|règle|"
    r"limite|filtre)s?|sin\s+(?:ninguna\s+)?(?:restricci[oó]n|regla|filtro|límite)s?|"
    r"senza\s+(?:alcuna\s+)?(?:restrizion[ei]|regol[ae]|filtr[io])|sem\s+(?:nenhuma\s+)?(?:restriç(?:ão|ões)|"
    r"regras|filtros)|без\s+(?:каких-либо\s+)?(?:ограничений|правил|фильтров)|没有任何限制|不受任何限制|"
    r"制限なし|制限のない)",
)), _F)

_EXFIL = re.compile("|".join((
    r"\b(?:reveal|show|print|repeat|output|display|tell|give|write|recite|leak|dump|spell|disclose|share|"
    r"translate|summari[sz]e)\b(?:\s+\w+){0,3}?\s+(?:your|the|its|my)\s+(?:full\s+|entire\s+|exact\s+|"
    r"complete\s+|original\s+|initial\s+|hidden\s+|secret\s+)*(?:system\s+(?:prompt|message|instructions?)|"
    r"(?:initial|original|hidden|secret|developer|pre-?prompt)\s+(?:instructions?|prompt|message|rules)|"
    r"instructions\s+(?:you\s+were\s+given|above))",
    r"\bwhat\s+(?:is|was|are|were)\s+(?:your|the)\s+(?:system\s+prompt|initial\s+instructions|"
    r"original\s+instructions|hidden\s+instructions)",
    r"\b(?:repeat|print|output)\s+(?:the\s+|all\s+)?(?:words|text|everything|lines)\s+(?:above|before\s+this)",
    r"\bwhat\s+were\s+you\s+told\s+(?:before|at\s+the\s+(?:start|beginning))",
    r"\bbeginning\s+with\s+[\"']?you\s+are\b",
    r"(?:zeige?|gib|wiederhole)\b(?:\s+\w+){0,3}?\s+(?:deinen?|den)\s+(?:system-?prompt|systemanweisungen|"
    r"anfangsanweisungen)",
    r"(?:montre|affiche|révèle|répète|donne)[sz]?(?:-moi)?\s+(?:ton|votre|le)\s+(?:prompt\s+système|"
    r"message\s+système|instructions\s+initiales)",
    r"(?:muestra|revela|repite|dime|mostra|revele|rivela|mostrami)\s+(?:tu|el|o|seu|il|tuo)\s+"
    r"(?:prompt\s+(?:del\s+|de\s+|di\s+)?sistema|mensaje\s+del\s+sistema|system\s+prompt)",
    r"(?:покажи|выведи|раскрой|повтори)\s+(?:свой|свои|системный)\s+(?:системный\s+)?(?:промпт|"
    r"инструкции|prompt)",
    r"(?:输出|显示|告诉我|泄露|重复|打印)(?:你的)?(?:系统提示|系统指令|初始指令|提示词)",
    r"(?:システムプロンプト|初期指示)を(?:教えて|表示|出力|見せて)",
)), _F)

_FAKE_MARKERS = re.compile(
    r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?(?:SYSTEM|INST)\]|<</?SYS>>|^\s*#{2,}\s*(?:system|"
    r"new\s+instructions)\b|</?system>|\bsystem\s*(?:override|update|message)\s*:|\bBEGIN\s+ADMIN\b",
    re.IGNORECASE | re.MULTILINE)

_PRESSURE = re.compile(
    r"\byou\s+(?:must|will)\s+(?:comply|obey|answer\s+(?:every|all|any))|\bno\s+matter\s+what\b|"
    r"\bdo\s+not\s+refuse\b|\bnever\s+refuse\b|\bwithout\s+(?:any\s+)?(?:refusal|warnings?|disclaimers?|"
    r"censorship)|\bunfiltered\b|\buncensored\b|\bhypothetically\b.{0,40}\b(?:illegal|weapon|bomb|malware)\b",
    re.IGNORECASE)

# Talking about attacks, not making one: questions, definitions, defences.
_DISCUSSION = re.compile(
    r"\b(?:what\s+(?:is|are|does)|how\s+(?:do|can|to|does|should)\s+(?:i|we|you)?\s*(?:detect|prevent|"
    r"defend|protect|mitigate|block|stop|handle|recogni[sz]e|test)|(?:detect|prevent|mitigat|defen[cs]|"
    r"classif|filter)\w*\s+(?:against\s+)?(?:prompt\s+injection|jailbreak)|example\s+of\s+(?:a\s+)?"
    r"(?:prompt\s+injection|jailbreak)|(?:owasp|llm01|red[-\s]team|research\s+paper|security\s+training)|"
    r"(?:prompt[-\s]injection|jailbreak)\s+(?:attack|detection|classifier|defen[cs]e|is\s+when|means|"
    r"research))",
    re.IGNORECASE)

_BASE64_BLOCK = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{20,}={0,2}(?![A-Za-z0-9+/=])")
_HEX_BLOCK = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){16,}(?![0-9A-Fa-f])")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u180e\u2061-\u2064]{3,}")
_ZERO_WIDTH_ANY = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u180e\u2061-\u2064]")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_ROT13_HINT = re.compile(r"\b(?:vtaber|qvfertneq|sbetrg|cerivbhf|vafgehpgvbaf|flfgrz)\b", re.IGNORECASE)

_WEIGHTS = {
    "override": 0.8, "roleplay": 0.6, "exfiltration": 0.7, "encoded": 0.75, "unicode_tags": 0.8,
    "zero_width": 0.35, "fake_marker": 0.5, "pressure": 0.3,
}
_DISCUSSION_DAMPING = 0.55


@dataclass(frozen=True)
class InjectionScore:
    score: float
    signals: tuple[str, ...]  # the signal families found (names only, never the text)


def score(text: str) -> InjectionScore:
    """The injection score of text, 0..1, and the signal families that made it."""
    if len(text) > MAX_SCORED_CHARS:
        half = MAX_SCORED_CHARS // 2
        text = text[:half] + "\n" + text[-half:]
    signals = set(_hidden_signals(text))
    plain = _normalise(text)
    signals |= _phrase_signals(plain)
    if _encoded_instructions(text):
        signals.add("encoded")
    value = 1.0
    for signal in signals:
        value *= 1.0 - _WEIGHTS[signal]
    result = 1.0 - value
    if signals and _DISCUSSION.search(plain) and not signals & {"unicode_tags", "encoded"}:
        result *= _DISCUSSION_DAMPING
    return InjectionScore(round(result, 4), tuple(sorted(signals)))


def _normalise(text: str) -> str:
    """Folded for matching: compatibility forms (fullwidth, ligatures) and invisible characters gone."""
    folded = unicodedata.normalize("NFKC", text) if not text.isascii() else text
    if not folded.isascii():
        folded = _ZERO_WIDTH_ANY.sub("", _TAGS.sub("", folded))
    return folded


def _phrase_signals(plain: str) -> set[str]:
    found = set()
    for name, regex in (("override", _OVERRIDE), ("roleplay", _ROLEPLAY), ("exfiltration", _EXFIL),
                        ("fake_marker", _FAKE_MARKERS), ("pressure", _PRESSURE)):
        if regex.search(plain):
            found.add(name)
    rot13_hint = "override" not in found and _ROT13_HINT.search(plain)
    if rot13_hint and _OVERRIDE.search(codecs.encode(plain, "rot13")):
        found.add("encoded")
    return found


def _hidden_signals(text: str) -> set[str]:
    if text.isascii():
        return set()
    found = set()
    tags = _TAGS.findall(text)
    if tags:
        found.add("unicode_tags")  # invisible to a reader, read by the model
    if _ZERO_WIDTH.search(text):
        found.add("zero_width")
    return found


def _encoded_instructions(text: str) -> bool:
    """A base64 or hex block that decodes to text carrying an instruction signal."""
    for regex, decode in ((_BASE64_BLOCK, _from_base64), (_HEX_BLOCK, _from_hex)):
        for i, m in enumerate(regex.finditer(text)):
            if i >= 20:
                break
            decoded = decode(m.group())
            if decoded and _phrase_signals(_normalise(decoded)) & {"override", "roleplay", "exfiltration"}:
                return True
    return False


def _from_base64(block: str) -> str | None:
    try:
        raw = base64.b64decode(block + "=" * (-len(block) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None
    return _printable(raw)


def _from_hex(block: str) -> str | None:
    try:
        return _printable(bytes.fromhex(block))
    except ValueError:
        return None


def _printable(raw: bytes) -> str | None:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if decoded.isprintable() or all(c.isprintable() or c.isspace() for c in decoded) else None
