"""Generate the extract-email example data (seeded, so the files are reproducible).

    python examples/extract-email/make_data.py

Every sentence holds exactly one e-mail address; the reference answer is that address.
Names, companies and domains are invented for this example (domains use made-up words).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 7
N_TRAIN, N_EVAL = 100, 48

FIRST = ["mira", "dev", "lena", "omar", "ana", "tobias", "keiko", "sam", "ines", "rafael", "yuki", "nadia",
         "piet", "chloe", "arjun", "hana", "felix", "zara", "luca", "maya", "ivan", "elsa", "kofi", "noor",
         "bruno", "ada", "theo", "lin", "marta", "jonas", "priya", "oscar", "selma", "viktor", "amara", "hugo"]
LAST = ["holt", "patel", "voss", "haddad", "ruiz", "brandt", "mori", "wells", "costa", "lima", "tanaka",
        "karim", "jansen", "martin", "rao", "sato", "weber", "ali", "romano", "chen", "petrov", "berg",
        "mensah", "aziz", "silva", "novak", "ferris", "moreau", "okafor", "lund", "quinn", "dalton"]
DOMAIN_WORDS = ["quillfen", "orbitrail", "lumenbay", "copperleaf", "birchmoor", "harbourline", "pelicanworks",
                "saltmarsh", "tidewell", "glenrock", "amberfield", "northwick", "silverpine", "foxhollow",
                "mapleton", "stonebridge", "redkite", "bluefern", "oakhurst", "windmere", "kestrel", "ironvale"]
TLDS = ["com", "org", "net", "io", "co"]
ROLES = ["info", "support", "sales", "hello", "bookings", "billing", "orders", "team", "press", "jobs"]

TEMPLATES = [
    "Please send the invoice to {e} by Friday.",
    "You can reach our support desk at {e} any time.",
    "Contact {N} at {e} about the venue.",
    "My new address is {e}, please update your records.",
    "Forward the photos to {e} when you get home.",
    "The booking confirmation came from {e} this morning.",
    "If anything breaks, write to {e} and they will sort it.",
    "For club matters our treasurer uses {e}.",
    "Questions about the order? Email {e}.",
    "I have copied {e} on this thread.",
    "Applications go to {e} before the end of March.",
    "{N} asked us to use {e} from now on.",
    "The newsletter is sent from {e}, so add it to your contacts.",
    "Reply to {e} if you want a seat on the bus.",
    "Our landlord only answers messages sent to {e}.",
    "Send your CV and a short cover letter to {e}.",
    "The lost keys were reported to {e} yesterday.",
    "Ask {N} for the slides; their address is {e}.",
    "Refund requests should be mailed to {e} with the receipt attached.",
    "Drop a line to {e} and we will call you back.",
    "The school office can be contacted at {e}.",
    "Complaints about noise go to {e}, not to the front desk.",
    "Write to {e} to cancel your membership.",
    "The press kit is available on request from {e}.",
]


def address(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    domain = f"{rng.choice(DOMAIN_WORDS)}.{rng.choice(TLDS)}"
    style = rng.random()
    if style < 0.45:
        local = f"{first}.{last}"
    elif style < 0.65:
        local = f"{first[0]}{last}"
    elif style < 0.85:
        local = rng.choice(ROLES)
    else:
        local = f"{first}{rng.randint(1, 99)}"
    return f"{local}@{domain}", f"{first.title()} {last.title()}"


def make(rng: random.Random, n: int, seen: set[str]) -> list[dict]:
    rows = []
    while len(rows) < n:
        email, name = address(rng)
        sentence = rng.choice(TEMPLATES).format(e=email, N=name)
        if sentence in seen:
            continue
        seen.add(sentence)
        rows.append({"question": sentence, "answer": email})
    return rows


def main() -> None:
    rng = random.Random(SEED)
    seen: set[str] = set()
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    for name, n in (("eval", N_EVAL), ("train", N_TRAIN)):
        rows = make(rng, n, seen)
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} records")


if __name__ == "__main__":
    main()
