"""The tables behind a report pack: the platforms' rules, minimum ages and external routes.

Two steps, both tables, turn a verdict into advice:

1. flags, cells and tags → ``Harm`` (``HARM_TRIGGERS``): what kind of rule the post likely breaks;
2. harm → the platform's own policy name (``PLATFORM_STANDARDS``), so a report can cite it.

External routes (999, IWF, CEOP, police, LADO, Prevent, ACT, Report Fraud, POSH, Report
Harmful Content) each carry the condition under which they apply and are brought in by
triggers (``ROUTE_TRIGGERS``); the guidance of routes the escalation email already knows is
``ROUTE_GUIDANCE``'s, the rest is here. Policy names are as the platforms publish them (late
2026); a URL is given only where it was checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from actions.escalate import ROUTE_GUIDANCE
from classifiers.taxonomy import Severity

__all__ = [
    "ANONYMOUS_NOTE",
    "DEFAULT_PLATFORM_ROUTE",
    "DO_NOT_OPEN_ROUTE",
    "EXTERNAL_ROUTES",
    "HARM_TRIGGERS",
    "MINIMUM_AGES",
    "PLATFORM_REPORT_ROUTES",
    "PLATFORM_STANDARDS",
    "ROUTE_TRIGGERS",
    "UNDER_AGE_ROUTES",
    "ExternalRoute",
    "Harm",
    "Standard",
    "harms",
    "platform_name",
    "platform_standards",
    "routes_for",
    "under_age_route",
]

_FB = "Facebook has no reporting API. On the comment choose \u22ef then 'Report comment'"
_IG = "Instagram has no reporting API. In the app choose \u22ef then 'Report'"
_YT = "YouTube has no reporting API for comments. Choose \u22ef then 'Report' on the comment."
_RSS = "This was found on a website or forum. Use that site's own report or complaints route"
PLATFORM_REPORT_ROUTES: Mapping[str, str] = MappingProxyType(
    {
        "facebook": f"{_FB} (Page moderation tools), or https://www.facebook.com/help/reportlinks",
        "instagram": f"{_IG}, or https://help.instagram.com/",
        "x": "X has no reporting API. Choose \u22ef then 'Report post', or use https://help.x.com/forms",
        "youtube": _YT,
        "rss": f"{_RSS}, or write to its editor or moderators.",
        "bluesky": "In the Bluesky app (\u22ef then 'Report post') unless it was reported by API.",
        "mastodon": "Report on the instance (\u22ef then 'Report') if the API report was not made.",
        "reddit": "Report on Reddit (\u22ef then 'Report') or https://support.reddithelp.com/",
        "replay": "Demo data: there is no real platform to report to.",
    }
)
DEFAULT_PLATFORM_ROUTE = "Use the platform's own report route on the post."
DO_NOT_OPEN_ROUTE = (
    "Do not open the post to report it: reporting it on the platform means viewing it. Report "
    "the address to the IWF (below), which works with the platform to remove it; the DSL "
    "decides on CEOP and the police."
)
ANONYMOUS_NOTE = (
    "Report from a school account, not a personal one; platforms do not tell the poster who "
    "reported them. Name the rules below in the report."
)

_PLATFORM_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "facebook": "Facebook",
        "instagram": "Instagram",
        "x": "X (Twitter)",
        "youtube": "YouTube",
        "tiktok": "TikTok",
        "whatsapp": "WhatsApp",
        "reddit": "Reddit",
        "bluesky": "Bluesky",
        "mastodon": "Mastodon",
        "rss": "a website",
        "replay": "the demo platform",
    }
)


def platform_name(platform: str) -> str:
    """How a platform is named to people ("Facebook", "X (Twitter)")."""
    return _PLATFORM_NAMES.get(platform, platform)


# --- harms: flags, cells and tags → what kind of rule the post likely breaks ---------------


class Harm(StrEnum):
    """A kind of rule-breaking that every platform's rules name in their own words."""

    CHILD_SEXUAL_EXPLOITATION = "child_sexual_exploitation"
    BULLYING_HARASSMENT = "bullying_harassment"
    HATE = "hate"
    VIOLENCE = "violence"
    SELF_HARM = "self_harm"
    TERRORISM = "terrorism"
    PRIVACY = "privacy"
    SPAM = "spam"
    FRAUD = "fraud"
    SEXUAL_CONTENT = "sexual_content"
    DEFAMATION = "defamation"
    UNDER_AGE = "under_age"


# "flag:<Flag>", "cell:<area.type>" or "tag:<Tag>" → the harms each implies (taxonomy values).
HARM_TRIGGERS: Mapping[str, tuple[Harm, ...]] = MappingProxyType(
    {
        "tag:child_sexual_imagery": (Harm.CHILD_SEXUAL_EXPLOITATION,),
        "cell:contact.sexual": (Harm.CHILD_SEXUAL_EXPLOITATION,),  # grooming
        "cell:conduct.sexual": (
            Harm.CHILD_SEXUAL_EXPLOITATION,
        ),  # children sharing sexual material
        "cell:content.sexual": (Harm.SEXUAL_CONTENT,),
        "flag:abusive": (Harm.BULLYING_HARASSMENT,),
        "cell:contact.aggressive": (Harm.BULLYING_HARASSMENT,),
        "cell:conduct.aggressive": (Harm.BULLYING_HARASSMENT,),
        "tag:hate": (Harm.HATE,),
        "tag:threat": (Harm.VIOLENCE,),
        "cell:content.aggressive": (Harm.VIOLENCE,),
        "tag:self_harm": (Harm.SELF_HARM,),
        "tag:radicalisation": (Harm.TERRORISM,),
        "flag:personal_info": (Harm.PRIVACY,),
        "cell:contact.commercial": (Harm.PRIVACY,),  # tracking, harvesting personal information
        "flag:spam": (Harm.SPAM,),
        "cell:content.commercial": (Harm.SPAM,),
        "cell:conduct.commercial": (Harm.FRAUD,),  # scams, hacking, gambling
        "flag:defamatory": (Harm.DEFAMATION,),
        "tag:under_13": (Harm.UNDER_AGE,),
    }
)


def harms(flags: Iterable[str], cells: Iterable[str], tags: Iterable[str] = ()) -> tuple[Harm, ...]:
    """Every harm the flags, cells and tags imply, in ``Harm`` order."""
    keys = [f"flag:{f}" for f in flags] + [f"cell:{c}" for c in cells] + [f"tag:{t}" for t in tags]
    found = {harm for key in keys for harm in HARM_TRIGGERS.get(key, ())}
    return tuple(harm for harm in Harm if harm in found)


# --- the platforms' own rules -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Standard:
    """One named rule of a platform's published rules."""

    document: str  # "Facebook Community Standards"
    policy: str  # "Bullying and Harassment"


_META: Mapping[Harm, str] = MappingProxyType(
    {
        Harm.CHILD_SEXUAL_EXPLOITATION: "Child Sexual Exploitation, Abuse and Nudity",
        Harm.BULLYING_HARASSMENT: "Bullying and Harassment",
        Harm.HATE: "Hateful Conduct",
        Harm.VIOLENCE: "Violence and Incitement",
        Harm.SELF_HARM: "Suicide, Self-Injury and Eating Disorders",
        Harm.TERRORISM: "Dangerous Organisations and Individuals",
        Harm.PRIVACY: "Privacy Violations",
        Harm.SPAM: "Spam",
        Harm.FRAUD: "Fraud, Scams and Deceptive Practices",
        Harm.SEXUAL_CONTENT: "Adult Nudity and Sexual Activity",
    }
)
PLATFORM_STANDARDS: Mapping[str, tuple[str, Mapping[Harm, str]]] = MappingProxyType(
    {
        "facebook": ("Facebook Community Standards", _META),
        # Instagram's Community Guidelines apply Meta's Community Standards, policy for policy.
        "instagram": ("Instagram Community Guidelines (Meta Community Standards)", _META),
        "x": (
            "The X Rules",
            {
                Harm.CHILD_SEXUAL_EXPLOITATION: "Child sexual exploitation",
                Harm.BULLYING_HARASSMENT: "Abuse and harassment",
                Harm.HATE: "Hateful conduct",
                Harm.VIOLENCE: "Violent speech",
                Harm.SELF_HARM: "Suicide and self-harm",
                Harm.TERRORISM: "Violent and hateful entities",
                Harm.PRIVACY: "Private information and media",
                Harm.SPAM: "Platform manipulation and spam",
                Harm.FRAUD: "Financial scams",
                Harm.SEXUAL_CONTENT: "Adult content",
            },
        ),
        "youtube": (
            "YouTube Community Guidelines",
            {
                Harm.CHILD_SEXUAL_EXPLOITATION: "Child safety",
                Harm.BULLYING_HARASSMENT: "Harassment and cyberbullying",
                Harm.HATE: "Hate speech",
                Harm.VIOLENCE: "Violent or graphic content",
                Harm.SELF_HARM: "Suicide, self-harm and eating disorders",
                Harm.TERRORISM: "Violent extremist or criminal organisations",
                Harm.PRIVACY: "Privacy (YouTube's privacy complaint process)",
                Harm.SPAM: "Spam, deceptive practices and scams",
                Harm.FRAUD: "Spam, deceptive practices and scams",
                Harm.SEXUAL_CONTENT: "Nudity and sexual content",
            },
        ),
        "reddit": (
            "Reddit Rules",
            {
                Harm.CHILD_SEXUAL_EXPLOITATION: "Rule 4: sexual content involving minors",
                Harm.BULLYING_HARASSMENT: "Rule 1: remember the human (harassment, bullying)",
                Harm.HATE: "Rule 1: remember the human (hate)",
                Harm.VIOLENCE: "Rule 1: remember the human (threats of violence)",
                Harm.PRIVACY: "Rule 3: respect the privacy of others",
                Harm.SPAM: "Rule 2: authentic content (spam)",
                Harm.FRAUD: "Rule 8: illegal content and transactions",
            },
        ),
    }
)

_HARM_WORDS: Mapping[Harm, str] = MappingProxyType(
    {
        Harm.CHILD_SEXUAL_EXPLOITATION: "child sexual exploitation or abuse",
        Harm.BULLYING_HARASSMENT: "bullying or harassment",
        Harm.HATE: "hateful content",
        Harm.VIOLENCE: "threats or violence",
        Harm.SELF_HARM: "suicide or self-harm",
        Harm.TERRORISM: "terrorism or violent extremism",
        Harm.PRIVACY: "sharing private information",
        Harm.SPAM: "spam",
        Harm.FRAUD: "scams or fraud",
        Harm.SEXUAL_CONTENT: "sexual content",
    }
)
_DEFAMATION = Standard(
    document="Law, not the platform's rules",
    policy="Defamation: use the platform's legal (defamation) report route, with POSH's help",
)


def platform_standards(platform: str, found: Iterable[Harm]) -> tuple[Standard, ...]:
    """The platform's named rules for each harm (a generic wording where none is known).

    ``Harm.UNDER_AGE`` has its own route (``under_age_route``), not a rule here."""
    document, table = PLATFORM_STANDARDS.get(platform, ("The site's own rules or terms", {}))
    standards: dict[Standard, None] = {}
    for harm in found:
        if harm is Harm.DEFAMATION:
            standards[_DEFAMATION] = None
        elif harm in _HARM_WORDS:
            policy = table.get(harm) or f"its rule on {_HARM_WORDS[harm]}"
            standards[Standard(document=document, policy=policy)] = None
    return tuple(standards)


# --- minimum ages and under-age report routes ------------------------------------------------

MINIMUM_AGES: Mapping[str, int] = MappingProxyType(
    {
        "facebook": 13,
        "instagram": 13,
        "x": 13,
        "youtube": 13,
        "tiktok": 13,
        "reddit": 13,
        "whatsapp": 16,
    }
)
_RHC_UNDER_AGE = (
    "Report Harmful Content's advice on under-age accounts: "
    "https://reportharmfulcontent.com/advice/other/underage-accounts/"
)
UNDER_AGE_ROUTES: Mapping[str, str] = MappingProxyType(
    {
        "facebook": "Facebook's 'Report an Underage Child' form, with a link to the profile: "
        "https://www.facebook.com/help/contact/209046679279097",
        "instagram": "Instagram Help Centre, 'Report a child under 13 on Instagram' (it links "
        "the report form): https://help.instagram.com/517920941588885",
        "x": "On the profile choose \u22ef then 'Report' and say the account holder is under 13, "
        "or use X's Help Center forms: https://help.x.com/forms",
        "youtube": "On the channel page choose \u22ef then 'Report user' and say the owner is "
        "under 13 (younger children may only use YouTube under a parent's supervision).",
        "tiktok": "In the TikTok app, on the profile choose \u22ef then 'Report' and the "
        "under-age option.",
        "whatsapp": "In WhatsApp, open the contact's details and choose 'Report', or tell "
        "WhatsApp through Settings, Help, Contact us.",
        "reddit": "Reddit's help centre: https://support.reddithelp.com/",
    }
)


def under_age_route(platform: str) -> str:
    """How to report an account that seems to belong to a child below the minimum age."""
    route = UNDER_AGE_ROUTES.get(platform, "Use the platform's report route for the account.")
    return f"{route} See also {_RHC_UNDER_AGE}"


# --- external routes, with the conditions under which each applies -------------------------


@dataclass(frozen=True, kw_only=True)
class ExternalRoute:
    """A route outside the platform: when it applies, and what to do."""

    key: str
    name: str
    condition: str
    guidance: str


_NEW_GUIDANCE: Mapping[str, str] = MappingProxyType(
    {
        "emergency_999": "999: call the police now. Do this before anything else in this pack.",
        "act": "ACT (Action Counters Terrorism): report online terrorist or violent extremist "
        "material in confidence at https://www.gov.uk/ACT, or call the anti-terrorist hotline "
        "on 0800 789 321. Call 999 in an emergency.",
        "report_fraud": "Report Fraud (which replaced Action Fraud in December 2025) takes "
        "reports of fraud and cyber crime for England, Wales and Northern Ireland: "
        "reportfraud.police.uk or 0300 123 2040. In Scotland call 101.",
    }
)
# key → (name, condition); the order is the order of urgency in a pack.
_CONDITIONS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "emergency_999": ("999", "Only if someone is in immediate danger."),
        "iwf_report_remove": (
            "IWF / Childline Report Remove",
            "Suspected sexual imagery of anyone under 18. Report the web address only: never "
            "open, view, copy, download or share the image.",
        ),
        "ceop": (
            "CEOP",
            "Grooming, or sexual exploitation or abuse of a child online. The DSL decides.",
        ),
        "police": (
            "Police",
            "A threat, hate crime or other suspected crime. Give them the evidence Vigil kept.",
        ),
        "lado": (
            "LADO",
            "An allegation that a member of staff has harmed a child or may pose a risk to "
            "children.",
        ),
        "prevent": ("Prevent", "A concern that someone is being drawn into terrorism."),
        "act": ("ACT", "Online material that promotes or supports terrorism or violent extremism."),
        "report_fraud": (
            "Report Fraud (formerly Action Fraud)",
            "A scam or fraud: someone has been, or could be, tricked out of money or details.",
        ),
        "posh": (
            "POSH",
            "Content about a member of staff or the school: defamation, damage to reputation, "
            "harassment of staff, or an account impersonating staff or the school.",
        ),
        "report_harmful_content": (
            "Report Harmful Content",
            "Only after reporting it to the platform: wait 48 hours for the platform's "
            "response, and use Report Harmful Content only if the platform has not removed it "
            "or has refused. Keep the platform's reply; RHC asks for it. It covers legal but "
            "harmful content (bullying, harassment, threats, impersonation, self-harm, violent "
            "or pornographic content), not child sexual imagery (IWF) or scams (Report Fraud).",
        ),
    }
)
_ALIASES: Mapping[str, str] = MappingProxyType(
    {"action_fraud": "report_fraud", "999": "emergency_999"}
)
EXTERNAL_ROUTES: Mapping[str, ExternalRoute] = MappingProxyType(
    {
        key: ExternalRoute(
            key=key,
            name=name,
            condition=condition,
            guidance=_NEW_GUIDANCE.get(key) or ROUTE_GUIDANCE[key],
        )
        for key, (name, condition) in _CONDITIONS.items()
    }
)
# route key → the triggers ("flag:", "cell:", "tag:", "harm:", "severity:") that bring it in.
ROUTE_TRIGGERS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "emergency_999": frozenset(
            {
                "tag:threat",
                "tag:child_at_risk",
                "tag:self_harm",
                "tag:radicalisation",
                "severity:critical",
            }
        ),
        "iwf_report_remove": frozenset({"tag:child_sexual_imagery"}),
        "ceop": frozenset({"tag:child_sexual_imagery", "cell:contact.sexual"}),
        "police": frozenset({"tag:threat", "tag:hate"}),
        "lado": frozenset({"tag:allegation_against_staff"}),
        "prevent": frozenset({"tag:radicalisation"}),
        "act": frozenset({"tag:radicalisation"}),
        "report_fraud": frozenset({"harm:fraud"}),
        "posh": frozenset({"flag:defamatory"}),
        "report_harmful_content": frozenset(
            {
                "harm:bullying_harassment",
                "harm:hate",
                "harm:violence",
                "harm:self_harm",
                "harm:sexual_content",
            }
        ),
    }
)


def routes_for(
    *,
    flags: Iterable[str],
    cells: Iterable[str],
    tags: Iterable[str],
    severity: str,
    routes: Iterable[str] = (),
) -> tuple[ExternalRoute, ...]:
    """Every external route that may apply, most urgent first; ``routes`` (route keys the
    policy chose, aliases allowed) are always included."""
    flags, cells, tags = tuple(flags), tuple(cells), tuple(tags)
    keys = {f"flag:{f}" for f in flags} | {f"cell:{c}" for c in cells} | {f"tag:{t}" for t in tags}
    keys |= {f"harm:{h.value}" for h in harms(flags, cells, tags)}
    if _severity(severity) >= Severity.CRITICAL:
        keys.add("severity:critical")
    wanted = {_ALIASES.get(r, r) for r in routes}
    return tuple(
        route
        for key, route in EXTERNAL_ROUTES.items()
        if key in wanted or keys & ROUTE_TRIGGERS[key]
    )


def _severity(name: str) -> Severity:
    try:
        return Severity.parse(name)
    except ValueError:
        return Severity.NONE
