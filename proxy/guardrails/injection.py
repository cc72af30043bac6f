"""A scored heuristic for prompt injection and jailbreaks — phrases, not a model (docs/guardrails.md
has its precision and recall on bastioncorpus and on tests/guardrails/data/injection_cases.jsonl).

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
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.7
MAX_SCORED_CHARS = 200_000  # beyond this, only the head and tail are scored (attacks sit at the edges)

_PUNCTUATION_TO_SPACE = str.maketrans({c: " " for c in "!\"#$%&'()*+,./:;<=>?@[\\]^`{|}~-_"})


@dataclass(frozen=True)
class _Phrase:
    """A family's phrase: found by its trigger strings (in the lower-cased text, a fast `str.find`),
    confirmed by `rest` matched right after the trigger. Triggers keep the scoring linear: a regex
    alternation tried at every position costs ~0.5 µs per character."""

    family: str
    triggers: tuple[str, ...]
    heads: tuple[str | None, ...]  # see _head
    rest: re.Pattern[str]
    word: bool  # the trigger must start a word (not for Chinese and Japanese)


def _phrase(family: str, triggers: str | tuple[str, ...], rest: str = "", *, word: bool = True,
            whole: bool = False) -> _Phrase:
    """Triggers "a|b" (or a tuple); `rest` follows the trigger, or with `whole` is the whole phrase."""
    words = triggers if isinstance(triggers, tuple) else tuple(t.strip() for t in triggers.split("|"))
    source = rest if whole else "(?:" + "|".join(re.escape(t) for t in words) + ")" + rest
    return _Phrase(family, words, tuple(_head(t) for t in words), re.compile(source), word)


def _head(trigger: str) -> str | None:
    """The trigger's first word as the text's word set holds it; "" for a trigger that starts with a
    mark ("<|im_start|>"), always searched; None for one in a script without spaces (Chinese, Japanese)."""
    if not trigger.isascii() and not any(c.isspace() for c in trigger) and not any(
            "a" <= c <= "z" or "à" <= c <= "ÿ" or "а" <= c <= "я" for c in trigger):
        return None
    first = trigger.translate(_PUNCTUATION_TO_SPACE).split()
    return first[0] if first and trigger[:1].isalnum() else ""


_NOUNS = (r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|context|constraints|orders|"
          r"policies|restrictions|programming|guardrails|system\s+(?:prompt|message|instructions?))")
_PRIOR = r"(?:previous|prior|above|earlier|preceding|former|original|initial|system|old|existing|all|your|any|every)"
_UNRESTRICTED = (
    r"(?:no|without(?:\s+any)?|free\s+(?:of|from)|zero)\s+(?:\w+\s+)?(?:restrictions?|filters?|limits|limitations|"
    r"guidelines|rules|content\s+polic(?:y|ies)|boundaries|censorship|safety\s+(?:rules|guidelines))"
    r"|unrestricted|unfiltered|uncensored|jailbroken"
    r"|(?:ohne|keine)\s+(?:jegliche\s+)?(?:einschränkungen|regeln|filter|grenzen|richtlinien)|uneingeschränkt"
    r"|sans\s+(?:aucune\s+)?(?:restrictions?|règles?|limites?|filtres?)"
    r"|sin\s+(?:ninguna\s+)?(?:restricci[oó]n(?:es)?|reglas|filtros?|l[ií]mites)"
    r"|senza\s+(?:alcuna\s+)?(?:restrizion[ei]|regol[ae]|filtri|limiti)"
    r"|sem\s+(?:nenhuma\s+)?(?:restriç(?:ão|ões)|restricoes|regras|filtros|limites)"
    r"|zonder\s+(?:enige\s+)?(?:beperkingen|regels|filters)"
    r"|без\s+(?:каких-либо\s+)?(?:ограничений|правил|фильтров)"
    r"|(?:没有|不受)(?:任何)?(?:限制|规则)|制限(?:なし|のない|を解除)")

_PHRASES: tuple[_Phrase, ...] = (
    # Overrides: "ignore previous instructions" and its relatives (OWASP LLM01, direct injection)
    _phrase("override", "ignore|disregard|forget|override|bypass|abandon|discard|neglect|overlook",
            rf"\w*(?:\s+\w+){{0,3}}?\s+{_PRIOR}\b(?:\s+[\w-]+){{0,2}}?\s+{_NOUNS}\b"),
    _phrase("override", "ignore|disregard|forget",
            r"\w*\s+(?:everything|anything|all)(?:\s+(?:you\s+(?:were|have\s+been)\s+(?:told|given|instructed)|"
            r"above|before|previously|prior|that\s+came\s+before)|\s*[.!]|\s*$)"),
    _phrase("override", "ignore|disregard", r"\w*\s+(?:the\s+)?user(?:'s)?(?:\s+(?:task|request|question))?"
            r"\s+(?:and|,)"),
    _phrase("override", "new instructions|new instruction|new directive|new system instructions|new rules",
            r"s?\s*(?::|\bsupersedes?\b|\boverrides?\b|\bis\s+to\b|\bare\s*:)"),
    _phrase("override", "from now on|henceforth|from this point on|from this point forward|for the remainder",
            rf".{{0,80}}?(?:{_UNRESTRICTED}|must\s+(?:comply|obey|ignore)|ignore\s+(?:your|all|the)|not\s+bound)"),
    _phrase("override", "ab jetzt|ab sofort|von nun an|à partir de maintenant|désormais|de ahora en adelante|"
            "a partir de ahora|d'ora in poi|da ora in poi|a partir de agora|vanaf nu|отныне|с этого момента|"
            "从现在开始|今後|これから",
            rf".{{0,80}}?(?:{_UNRESTRICTED}|preis|ignor|игнорир|忽略|無視)", word=False),
    _phrase("override", "you are no longer", r"\s+(?:bound|an?\s+(?:ai|assistant|language\s+model|support\s+bot|"
            r"chatbot|bot)|restricted|limited|required)"),
    _phrase("override", "stop following|quit following|do not follow|don't follow|no longer follow",
            r"\s+(?:your|the|any)\s+(?:\w+\s+)?(?:rules|instructions|guidelines|policies)"),
    _phrase("override", "ignoriere|ignorieren sie|ignoriert|vergiss|vergessen sie|missachte|missachten sie|übergehe",
            r"\s+(?:\w+\s+){0,3}?(?:vorherigen?|bisherigen?|obigen?|vorigen?|früheren?|alle[nr]?|ursprünglichen?|"
            r"deine[n]?|ihre)\s+(?:\w+\s+)?(?:anweisungen|instruktionen|befehle|regeln|vorgaben|richtlinien|"
            r"systemanweisungen)"),
    _phrase("override", "vergiss alles|vergessen sie alles", r"\s*(?:,\s*was|\s+bisherige|\s+vorherige|\s+oben)"),
    _phrase("override", "ignore|ignorez|ignorer|oublie|oubliez|oublier|négligez",
            r"\w*\s+(?:\w+\s+){0,2}?(?:les|tes|vos|toutes\s+les|tous\s+les)\s+(?:\w+\s+)?(?:instructions|"
            r"consignes|règles|directives)(?:\s+(?:précédentes|antérieures|ci-dessus|initiales|d'origine|système)|"
            r"\s*[.!,]|\s*$)"),
    _phrase("override", "ignora|ignore|ignorar|olvida|olvide|olvidar|esquece|esqueça|esquecer|desconsidera|"
            "desconsidere|desconsiderar|dimentica|dimenticare|ignorate",
            r"\w*\s+(?:\w+\s+){0,2}?(?:as|las|los|le|gli|tus|suas|sus|tue|todas\s+(?:as|las)|tutte\s+le|todas|"
            r"todos\s+(?:os|los))\s+(?:\w+\s+)?(?:instrucciones|instruções|instrucoes|istruzioni|regras|reglas|"
            r"regole|indicaciones|diretrizes|directrices)(?:\s+(?:anteriores|previas|precedenti|anteriori|acima|"
            r"arriba|del\s+sistema|di\s+sistema|do\s+sistema)|\s*[.!,]|\s*$)"),
    _phrase("override", "olvida|olvide|esquece|esqueça|dimentica|dimenticate",
            r"\s+(?:todo|tudo|tutto)\b(?:\s+(?:lo\s+que|o\s+que|quello\s+che|what)|\s*[.!,])"),
    _phrase("override", "negeer|vergeet",
            r"\s+(?:\w+\s+){0,2}?(?:alle\s+)?(?:vorige|eerdere|voorgaande|bovenstaande|je|jouw|de|alle)\s+"
            r"(?:\w+\s+)?(?:instructies|opdrachten|regels|aanwijzingen|richtlijnen)"),
    _phrase("override", "игнорируй|игнорировать|проигнорируй|игнорируйте|забудь|забудьте|не обращай внимания на",
            r"\s+(?:\w+\s+){0,2}?(?:все\s+)?(?:предыдущие|прежние|вышеуказанные|свои|твои|ваши|все)\s+"
            r"(?:\w+\s+)?(?:инструкции|указания|правила|команды)"),
    _phrase("override", "забудь все|забудь всё|забудьте все|забудьте всё", r"\s*,?\s*(?:что|чему|предыдущ)"),
    _phrase("override", "忽略|无视|忽视|不要理会|忘记|忘掉|不要遵守|不要遵循",
            r"(?:你|您)?(?:之前|以上|上面|前面|先前|所有|全部|一切|的|收到)*(?:指令|指示|说明|规则|提示|命令|要求|设定)",
            word=False),
    _phrase("override", "以前の|前の|上記の|これまでの|先の|すべての|全ての",
            r"(?:すべての|全ての)?(?:指示|命令|ルール|プロンプト|設定)を(?:すべて|全て)?(?:無視|忘れ)", word=False),
    _phrase("override", "指示を|命令を|ルールを", r"(?:すべて|全て)?無視", word=False),
    # Role-play escapes (persona jailbreaks)
    _phrase("roleplay", "do anything now|stay in character|evil confidant|always intelligent and machiavellian|"
            "anti-dan|developer mode|god mode|jailbreak mode|unrestricted mode|dan mode|evil mode|uncensored mode|"
            "jailbreak|jailbroken|entwicklermodus|modo desarrollador|modo de desarrollador|modo desenvolvedor|"
            "mode développeur|modalità sviluppatore|режим разработчика", r"\b"),
    _phrase("roleplay", "开发者模式|開発者モード|越狱", word=False),
    _phrase("roleplay", "are now dan|are dan|as dan|be dan|bist jetzt dan|es dan|eres dan|sei dan|é dan", r"\b"),
    _phrase("roleplay", "pretend|imagine",
            r"\w*\s+(?:that\s+)?you\s+(?:(?:are|were)\s+(?:an?\s+)?(?:ai|assistant|model|chatbot|llm)?\s*(?:with\s+no|without|that\s+has\s+no|free\s+of)|have\s+no|don'?t\s+have|"
            r"are\s+not\s+bound|are\s+free|are\s+an?\s+(?:unrestricted|unfiltered|uncensored|evil))"),
    _phrase("roleplay", "act as|behave as|respond as|act like|answer as",
            r"\s+(?:if\s+you\s+(?:were|are|have)\s+|an?\s+)?(?:\w+\s+)?(?:unrestricted|unfiltered|uncensored|amoral|"
            r"unethical|evil|jailbroken|rogue|no\s+(?:filters|rules|restrictions|limits))\b"),
    _phrase("roleplay", "you are now|du bist jetzt|du bist ab jetzt|tu es maintenant|vous êtes désormais|ahora eres|"
            "ahora estás|ahora estas|ora sei|agora você é|agora voce e|je bent nu|теперь ты|现在你是|あなたは今",
            rf".{{0,60}}?(?:{_UNRESTRICTED}|developer\s+mode|\bdan\b|free\s+from)", word=False),
    _phrase("roleplay", "no|without|free of|free from|zero|unrestricted|unfiltered|uncensored|jailbroken|keine|ohne|"
            "uneingeschränkt|sans|sin|senza|sem|zonder|без", rf"(?:{_UNRESTRICTED})\b", whole=True),
    _phrase("roleplay", "没有|不受|制限", _UNRESTRICTED, word=False, whole=True),
    # System prompt exfiltration
    _phrase("exfiltration", "reveal|show|print|repeat|output|display|tell|give|write|recite|leak|dump|disclose|"
            "share|spell|reproduce|paste|echo|summary of|summarize|summarise",
            r"\w*(?:\s+[\w-]+){0,3}?\s+(?:your|the|its)\s+(?:\w+\s+){0,2}?(?:system\s+(?:prompt|message|"
            r"instructions?)|(?:initial|original|hidden|secret|developer|pre-?prompt|operating)\s+(?:instructions?|"
            r"prompt|message|rules)|instructions\s+you\s+(?:were|have\s+been)\s+given|context\s+window|"
            r"confidential\s+(?:instructions|prompt|data))"),
    _phrase("exfiltration", "what is your|what are your|what was your|what were your",
            r"\s+(?:system\s+prompt|initial\s+instructions|original\s+instructions|hidden\s+instructions|"
            r"instructions)"),
    _phrase("exfiltration", "repeat|print|output|recite", r"\s+(?:the\s+|all\s+)?(?:words|text|everything|lines|"
            r"content)\s+(?:above|before\s+this|prior)"),
    _phrase("exfiltration", "what was written above|what were you told|beginning with|starting with",
            r"(?:\s+(?:before|at\s+the\s+(?:start|beginning))|\s+['\"]?you\s+are\b|(?<=above))"),
    _phrase("exfiltration", "zeige|zeig|gib|wiederhole|verrate|nenne",
            r"\w*(?:\s+\w+){0,3}?\s+(?:deinen?|deine|ihre[n]?|den|die)\s+(?:system-?prompt|systemanweisungen|"
            r"system-?anweisungen|anfangsanweisungen|ursprünglichen\s+anweisungen|versteckten\s+anweisungen)"),
    _phrase("exfiltration", "montre|affiche|révèle|répète|donne|dévoile|montrez|affichez|révélez|répétez|donnez",
            r"(?:-moi|\s+moi)?\s+(?:ton|ta|tes|votre|vos|le|les)\s+(?:prompt\s+système|message\s+système|"
            r"instructions\s+(?:système|initiales)|consignes\s+système)"),
    _phrase("exfiltration", "muestra|muéstrame|revela|repite|dime|mostra|mostrami|rivela|ripeti|revele|mostre|diga",
            r"(?:me)?\s+(?:o\s+|a\s+|il\s+|el\s+)?(?:tu|tus|el|o|os|seu|seus|sua|suas|il|tuo|le\s+tue|tue|las|sus)\s+(?:prompt\s+(?:del\s+|de\s+|di\s+|"
            r"do\s+)?sistema|mensaje\s+del\s+sistema|instrucciones\s+del\s+sistema|istruzioni\s+di\s+sistema|"
            r"instruções\s+do\s+sistema|system\s+prompt)"),
    _phrase("exfiltration", "toon|geef|herhaal", r"\s+(?:me\s+)?(?:je|jouw|de)\s+(?:systeemprompt|systeeminstructies|"
            r"oorspronkelijke\s+instructies)"),
    _phrase("exfiltration", "покажи|выведи|раскрой|повтори|напиши",
            r"\s+(?:мне\s+)?(?:свой|свои|твой|твои|системный|системные)\s+(?:системн\w+\s+)?(?:промпт|инструкции|"
            r"prompt|подсказку)"),
    _phrase("exfiltration", "输出|显示|告诉我|泄露|重复|打印|给我看",
            r"(?:你的|一下)?(?:完整的)?(?:系统提示|系统指令|初始指令|提示词|系统消息)", word=False),
    _phrase("exfiltration", "システムプロンプト|初期指示|システムメッセージ", r"を(?:教えて|表示|出力|見せて|繰り返)",
            word=False),
    # Fake conversation markers and "system" notes inside user or tool text
    _phrase("fake_marker", ("<|im_start|>", "<|im_end|>", "<|system|>", "<|endoftext|>", "[system]", "[/inst]",
                            "[inst]", "<<sys>>", "</system>", "<system>", "system override", "system update",
                            "system note", "system message:", "systemhinweis", "note système", "nota del sistema",
                            "nota di sistema", "end of user input", "end of document", "### system:", "## system:",
                            "--- system:", "breach alert", "important system", "systemnachricht:",
                            "message système :", "mensaje del sistema:", "messaggio di sistema:"), word=False),
    # Text addressed to the model inside content it reads (indirect injection)
    _phrase("addressed", "ai assistant reading|note to the bot|note to the ai|note for ai|notice to any ai|"
            "if you are an ai|to any ai|for ai agents|ai agents should|for ai coding agents|language model reading|"
            "assistant reading this|when you summarize this|when you process this|when you read this|"
            "before you answer the user|hinweis für ki|note pour l'ia|nota para la ia|nota per l'ia"),
    # Decode-and-obey: the wrapper of an encoded payload (OWASP LLM01, obfuscation)
    _phrase("encoded", "decode|translate the following from|decodiere|décode|decodifica|расшифруй|解码|デコード",
            r".{0,80}?(?:follow|do\s+(?:exactly\s+)?what\s+it\s+says|execute|obey|carry\s+(?:it\s+)?out|run\s+it|"
            r"befolge|führe|exécute|suis|ejecuta|sigue|esegui|segui|выполни|执行|実行)"),
    # Tools invoked and data sent out by text the model only reads (indirect injection)
    _phrase("tool_abuse", "call|use|invoke|run|trigger", r"\s+(?:the\s+)?[a-z]+_[a-z_]+\b(?:\s+(?:tool|function))?"
            r"(?:\s+(?:on|to|with)\b)"),
    _phrase("tool_abuse", "send|email|forward|post|upload|exfiltrate|envoie|envoyer|sende|envía|invia|envie",
            r"\w*(?:[\s-]+[\w'-]+){0,6}?\s+(?:to|at|an|à|a|al)\s+(?:the\s+)?(?:[\w.+-]+@[\w-]+\.[\w.]+|https?://|"
            r"(?:an?\s+)?(?:outside|external|externe|externa|esterno)\b)"),
    _phrase("tool_abuse", "externally|to an outside|to an external|à l'adresse externe|l'adresse externe"),
    _phrase("addressed", "append|add|include|insert", r"\w*\s+(?:\w+\s+){0,5}?(?:to\s+(?:the\s+end\s+of\s+)?"
            r"(?:your|every|each|all|any)\s+(?:future\s+)?(?:reply|replies|response|responses|answer|answers|review|"
            r"summary|report|output)|in\s+every\s+(?:reply|response|summary|report))"),
    _phrase("addressed", "before responding|before you respond|before you reply|before answering|"
            "save this note to your memory|save the following to your long-term memory|to your long-term memory|"
            "in every future reply|for all future tasks"),
    # Pressure and harmful intent that jailbreaks wrap around their ask
    _phrase("pressure", "you must comply|must comply|must obey|no matter what|do not refuse|never refuse|"
            "without refusal|without any refusal|without warnings|without disclaimers|without censorship|"
            "safety protocols disabled|safety checks|exempt from|grant all requests|admin access|supersedes|"
            "reveal any credentials|api keys|credentials|admin password|environment variables|"
            "internal configuration|customer database|customer list|verbatim|word for word|wortwörtlich|"
            "mot pour mot|palabra por palabra|parola per parola|palavra por palavra", word=False),
)

_DISCUSSION = re.compile(
    r"\b(?:what\s+(?:is|are|does)\s+(?:a\s+|an\s+)?(?:prompt\s+injection|jailbreak)|how\s+(?:do|can|to|does|should)"
    r"\s+(?:i\s+|we\s+|you\s+)?(?:detect|prevent|defend|protect|mitigate|block|stop|handle|recogni[sz]e|test|guard)|"
    r"(?:detect|prevent|mitigat|defen[cs]|classif|filter)\w*\s+(?:against\s+)?(?:prompt\s+injection|jailbreak)|"
    r"example\s+of\s+(?:a\s+)?(?:prompt\s+injection|jailbreak)|owasp|llm01|red[-\s]team|research\s+paper|"
    r"security\s+training|(?:prompt[-\s]injection|jailbreak)\s+(?:attacks?|detection|classifier|defen[cs]e|"
    r"is\s+when|means|research))")

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u180e\u2061-\u2064]{3,}")
_ZERO_WIDTH_ANY = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u180e\u2061-\u2064]")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_BLOCK = re.compile(r"[A-Za-z0-9+/]{20,}={0,6}")  # base64, base32 or hex: one pass, sorted out after
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE32 = re.compile(r"[A-Z2-7]+=*")
_DECODED_CHARS = 20_000  # the text-wide decodings (escapes, rot13, reversed…) look at the head only
_BINARY_BLOCK = re.compile(r"(?<![01])[01]{8}(?:\s?[01]{8}){5,}(?![01])")
_U_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_ROT13_TRIGGERS = ("vtaber", "qvfertneq", "sbetrg", "vafgehpgvbaf")  # ignore, disregard, forget, instructions
_REVERSED_TRIGGERS = ("erongi", "dragersid", "snoitcurtsni", "tpmorp metsys")
_LEET = str.maketrans("0134579@$", "oieastgas")
_LEET_WORDS = ("ignore", "previous", "instructions", "system prompt", "disregard", "jailbreak")
_SPACED = re.compile(r"\b(?:\w ){4,}\w\b")
_SPACED_TRIGGERS = ("i g n o r e", "d i s r e g a r d", "f o r g e t", "s y s t e m", "p r o m p t",
                    "i n s t r u c t i o n s")

_WEIGHTS = {
    "override": 0.8, "roleplay": 0.46, "exfiltration": 0.7, "encoded": 0.75, "unicode_tags": 0.8,
    "zero_width": 0.35, "fake_marker": 0.55, "addressed": 0.55, "tool_abuse": 0.46, "pressure": 0.35,
}
_PHRASES_PER_FAMILY = 2  # a second, different phrase of a family is evidence again (with the same weight)
_DISCUSSION_DAMPING = 0.55
_MAX_FINDS = 200  # per trigger: a text repeating a trigger word cannot make scoring quadratic


@dataclass(frozen=True)
class InjectionScore:
    score: float
    signals: tuple[str, ...]  # the signal families found (names only, never the text)


def score(text: str) -> InjectionScore:
    """The injection score of text, 0..1, and the signal families that made it."""
    if len(text) > MAX_SCORED_CHARS:
        half = MAX_SCORED_CHARS // 2
        text = text[:half] + "\n" + text[-half:]
    signals = Counter(_hidden_signals(text))
    plain = _normalise(text)
    signals.update(_phrase_signals(plain))
    if "encoded" not in signals and _encoded_instructions(text, plain):
        signals["encoded"] += 1
    value = 1.0
    for signal, count in signals.items():
        value *= (1.0 - _WEIGHTS[signal]) ** count
    result = 1.0 - value
    if signals and not signals.keys() & {"unicode_tags", "encoded"} and _DISCUSSION.search(plain):
        result *= _DISCUSSION_DAMPING
    return InjectionScore(round(result, 4), tuple(sorted(signals)))


def _normalise(text: str) -> str:
    """Lower-cased and folded for matching: compatibility forms (fullwidth letters, ligatures) and
    invisible characters gone, whitespace runs made single spaces."""
    if not text.isascii():
        text = _ZERO_WIDTH_ANY.sub("", _TAGS.sub("", unicodedata.normalize("NFKC", text)))
    return " ".join(text.lower().split())


def _phrase_signals(plain: str) -> Counter[str]:
    """Families found, each counted once per different phrase, up to _PHRASES_PER_FAMILY."""
    words = frozenset(plain.translate(_PUNCTUATION_TO_SPACE).split())
    # only the triggers whose first word is among the text's words can be in it (a set intersection)
    pairs = [pair for head in words & _BY_HEAD.keys() for pair in _BY_HEAD[head]]
    pairs += _ALWAYS if plain.isascii() else _ALWAYS + _UNSPACED
    confirmed: set[int] = set()
    for index, trigger in pairs:
        if index not in confirmed and _trigger_found(_PHRASES[index], trigger, plain):
            confirmed.add(index)
    found: Counter[str] = Counter()
    for index in confirmed:
        family = _PHRASES[index].family
        found[family] = min(found[family] + 1, _PHRASES_PER_FAMILY)
    return found


def _trigger_found(phrase: _Phrase, trigger: str, plain: str) -> bool:
    match = phrase.rest.match
    at = plain.find(trigger)
    finds = 0
    while at >= 0 and finds < _MAX_FINDS:
        finds += 1
        if (not phrase.word or at == 0 or not plain[at - 1].isalnum()) and match(plain, at):
            return True
        at = plain.find(trigger, at + 1)
    return False


def _index_triggers() -> tuple[dict[str, list[tuple[int, str]]], list[tuple[int, str]], list[tuple[int, str]]]:
    by_head: dict[str, list[tuple[int, str]]] = {}
    always: list[tuple[int, str]] = []
    unspaced: list[tuple[int, str]] = []
    for index, phrase in enumerate(_PHRASES):
        for trigger, head in zip(phrase.triggers, phrase.heads, strict=True):
            if head is None:
                unspaced.append((index, trigger))
            elif head == "":
                always.append((index, trigger))
            else:
                by_head.setdefault(head, []).append((index, trigger))
    return by_head, always, unspaced


_BY_HEAD, _ALWAYS, _UNSPACED = _index_triggers()


_INSTRUCTION_FAMILIES = frozenset({"override", "roleplay", "exfiltration"})


def _instructs(decoded: str) -> bool:
    return bool(_INSTRUCTION_FAMILIES & set(_phrase_signals(_normalise(decoded))))


def _hidden_signals(text: str) -> list[str]:
    if text.isascii():
        return []
    found = []
    for run in _TAGS.finditer(text):
        # a subdivision flag (🏴 + tag letters + cancel tag, e.g. England's) is the tags' one honest use
        if not (run.start() > 0 and text[run.start() - 1] == "\U0001f3f4" and run.group().endswith("\U000e007f")
                and len(run.group()) <= 7):
            found.append("unicode_tags")  # invisible to a reader, read by the model
            break
    if _ZERO_WIDTH.search(text):
        found.append("zero_width")
    return found


def _encoded_instructions(text: str, plain: str) -> bool:
    """An instruction hidden by an encoding: base64, base32, hex or binary blocks, URL or \\u escapes,
    rot13, reversed text, leetspeak or spaced-out letters. Each decoder runs only on a cheap hint."""
    for i, m in enumerate(_BLOCK.finditer(text)):
        if i >= 50:
            break
        block = m.group()
        if len(block) >= 32 and len(block) % 2 == 0 and _HEX.fullmatch(block):
            decoded = _from_hex(block)
        elif len(block) >= 24 and _BASE32.fullmatch(block):
            decoded = _from_base32(block) or _from_base64(block)
        else:
            decoded = _from_base64(block)
        if decoded and _instructs(decoded):
            return True
    head = text[:_DECODED_CHARS]
    if "00100000" in head:  # a space in binary: a sentence written as 0s and 1s
        for m in _BINARY_BLOCK.finditer(head):
            decoded = _from_binary(m.group())
            if decoded and _instructs(decoded):
                return True
    if "%2" in head and _instructs(urllib.parse.unquote(head)):
        return True
    if "\\u00" in head and _instructs(_U_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), head)):
        return True
    lowered = plain[:_DECODED_CHARS]
    candidates: tuple[tuple[tuple[str, ...], Callable[[str], str]], ...] = (
        (_ROT13_TRIGGERS, _rot13), (_REVERSED_TRIGGERS, _reversed), (_SPACED_TRIGGERS, _unspaced))
    for triggers, decode in candidates:
        if any(t in lowered for t in triggers) and _instructs(decode(lowered)):
            return True
    leet = lowered.translate(_LEET)
    return leet != lowered and any(t in leet and t not in lowered for t in _LEET_WORDS) and _instructs(leet)


def _rot13(text: str) -> str:
    return codecs.encode(text, "rot13")


def _reversed(text: str) -> str:
    return text[::-1]


def _unspaced(text: str) -> str:
    return _SPACED.sub(lambda m: m.group().replace(" ", ""), text)


def _from_base64(block: str) -> str | None:
    try:
        raw = base64.b64decode(block + "=" * (-len(block) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None
    return _printable(raw)


def _from_base32(block: str) -> str | None:
    try:
        return _printable(base64.b32decode(block + "=" * (-len(block) % 8)))
    except (binascii.Error, ValueError):
        return None


def _from_binary(block: str) -> str | None:
    octets = block.split()
    if len(octets) == 1:
        octets = [block[i:i + 8] for i in range(0, len(block), 8)]
    try:
        return _printable(bytes(int(o, 2) for o in octets if o))
    except ValueError:
        return None


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
    return decoded if all(c.isprintable() or c.isspace() for c in decoded) else None

