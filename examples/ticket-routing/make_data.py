"""Generate the ticket-routing example data (seeded, so the files are reproducible).

    python examples/ticket-routing/make_data.py

Emberline is a fictional supplier of kilns, clay and glazes to pottery studios. Its support
team routes every ticket to one of eight internal queues. The queue names are opaque, and
the routing follows house conventions that nobody outside the company could guess:

- Kiln faults are split by who made the kiln: Emberline's own K-series kilns (K40, K60, K80)
  go to the kiln workshop, OPS-KILN; kilns Emberline resells (Cinder, Pyrolux) go back to
  their makers through RMA-3P. The fault descriptions are the same for both.
- Any delivery problem goes to LOGI-FREIGHT, and that includes a kiln that arrives damaged:
  it is a transport claim, not a kiln fault, whoever made the kiln.
- Invoices, payments and refunds of goods go to T1-LEDGER; anything about classes and
  workshops, their refunds included, goes to EDU-STUDIO.
- Wholesale quotes and stockist requests go to TRADE-DESK; glaze and clay quality complaints
  to QA-GLAZE; login and account problems to ACCT-GATE.

Real tickets are noisy: customers introduce their studio and mention other products and
earlier orders ("we love our K60", "the glaze class last spring was great") before they get
to the problem. Every ticket here has such context, drawn from the same lists whatever the
queue, so the words that decide the queue are a small part of the text. Retrieving the most
similar past tickets then mostly finds tickets with similar *context*, whose queues are
unrelated; a model fine-tuned on the 440 training tickets learns which part of a ticket
decides the queue. A prompt can name the queues, but a 135M model cannot apply such rules
from a description.

Tickets are built from templates and word lists, with varied openings, sign-offs and
order numbers, so that no two tickets are the same.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 11
N_TRAIN, N_EVAL = 440, 96
QUEUES = ["OPS-KILN", "RMA-3P", "QA-GLAZE", "LOGI-FREIGHT", "T1-LEDGER", "TRADE-DESK", "ACCT-GATE", "EDU-STUDIO"]

MONEY = ["€{n}", "{n} EUR", "${n}", "£{n}", "{n} USD", "{n} GBP"]

# Kilns appear in the same phrasings for both makers: only the model name tells them apart.
OWN_KILNS = ["K40", "K60", "K80", "Emberline K40", "Emberline K60", "Emberline K80"]
RESOLD_KILNS = ["Cinder 18", "Cinder 24", "Cinder 30", "Pyrolux P3", "Pyrolux P5", "Pyrolux P7"]
KILN_FORMS = ["the {k} kiln", "our {k}", "the new {k} front-loader", "our {k} top-loader", "the {k} test kiln",
              "our big {k}"]
SHIPPED = ["the pallet of stoneware clay", "500 kg of porcelain body", "the 20 bags of raku clay",
           "our clay order (one tonne)", "the pallet of terracotta", "the kiln shelves", "the glaze sample set",
           "two jars of celadon glaze", "the brush set", "the cone pack", "three bottles of wax resist",
           "the banding wheel"]
GLAZES = ["the Midnight Tenmoku glaze", "your shino glaze", "the matte white glaze", "the copper red glaze",
          "the new celadon batch", "the speckled stoneware clay", "the porcelain body", "the raku clay",
          "the satin blue glaze", "the clear dipping glaze"]
GLAZE_FAULTS = ["crazes all over after firing", "is pinholing badly", "came out a completely different colour",
                "has grit in it", "crawls off the pots", "is full of lumps", "cracked in the bisque",
                "bloats at cone 6 even though it is rated for it", "smells off and has mould on top",
                "runs much more than the data sheet says"]
KILN_FAULTS = ["shows error E-1 halfway through the firing", "won't get past 600 degrees anymore",
               "trips the breaker as soon as it starts", "has an element that glows unevenly",
               "has a blank controller screen", "reads 40 degrees too high on the thermocouple",
               "clicks its relay but nothing heats", "has a lid hinge that snapped when I opened it",
               "stalls at cone 04 and never reaches temperature", "makes a buzzing noise and stops"]
DAMAGE = ["arrived with a cracked lid", "was delivered with the casing dented", "came with a broken element",
          "arrived with the controller smashed", "was left outside in the rain by the driver",
          "has a shattered base brick from the delivery"]
DELIVERY_FAULTS = ["hasn't arrived yet and it's been two weeks", "was delivered to the wrong address",
                   "is stuck at the depot according to tracking", "arrived with half of it missing",
                   "never showed up although the tracking says delivered", "was sent back to you by mistake",
                   "arrived soaked and split open"]
BILLING_ISSUES = ["I was charged {m} twice for order {o}", "the invoice of {m} for order {o} shows the wrong VAT",
                  "I need a copy of the {m} invoice for order {o}", "my card was charged {m} but the order was cancelled",
                  "the refund of {m} for order {o} never reached my account",
                  "please change the company name on the {m} invoice {o}",
                  "the direct debit of {m} failed and I got a late fee",
                  "why was I billed {m} when the quote said less?",
                  "I paid {m} by bank transfer but the invoice is still open"]
ACCOUNT_ISSUES = ["I can't log in to my account", "the password reset e-mail never arrives",
                  "my two-factor codes stopped working", "I want to add a second user to our studio account",
                  "the shop says my account is locked", "I need to change the e-mail address on my account",
                  "I keep getting logged out of the web shop", "please delete my old duplicate account"]
CLASS_ISSUES = ["I'd like to book two places on the glaze chemistry workshop",
                "can I move my wheel-throwing class to next month?",
                "I need a refund for the raku weekend course I can't attend",
                "is the kiln-loading masterclass suitable for beginners?",
                "we were charged for the studio workshop twice, please refund one",
                "the Saturday handbuilding class was cancelled, what happens to my booking?",
                "do you run private workshops for schools?",
                "I never received the joining details for the online glazing class",
                "can I pay for the summer course in instalments?",
                "my voucher for a throwing class was not accepted"]

TRADE_ISSUES = ["could you quote us a wholesale price for {item} by the pallet?",
                "we would like to become a stockist of your glazes in our shop",
                "do you offer trade discounts on {item} for a school that orders every term?",
                "please send your trade price list for {item}",
                "we want to resell your K-series kilns in our region, who do we talk to?",
                "is there a volume discount if we order {item} every month?",
                "our college wants a yearly supply contract for {item}"]

# Context that customers add before or after the problem. It is drawn from the same lists
# whatever the queue, and it mentions kilns, glazes, classes, invoices and deliveries, so it
# says nothing about where the ticket belongs.
STUDIO_KINDS = ["small pottery studio", "community ceramics workshop", "school art department",
                "two-person tableware business", "university ceramics lab", "hobby potters' club"]
PLACES = ["Lyon, France", "Porto, Portugal", "Graz, Austria", "Ghent, Belgium", "Bologna, Italy", "Aarhus, Denmark",
          "Leeds, UK", "Denver, USA", "Oslo, Norway", "Zurich, Switzerland", "Toronto, Canada", "Bristol, UK",
          "Austin, USA", "Melbourne, Australia", "Cork, Ireland", "Krakow, Poland"]
MENTIONS = ["our {k} kiln has been a workhorse", "we took your glaze chemistry class last spring",
            "your shino glaze is our best seller", "we pay our invoices by direct debit",
            "the last pallet of stoneware clay arrived on time", "we fire our {k} and a small test kiln",
            "two of us did the raku weekend course", "we mostly buy porcelain body and celadon glaze",
            "we ordered the banding wheel last month", "our account is in the studio manager's name",
            "we also run evening classes of our own", "our {k} was delivered last year"]
CONTEXT_FORMS = ["We are a {kind} in {place}, and {mention}.", "{Mention}, and we're a {kind} in {place}.",
                 "I run a {kind} in {place}; {mention}.", "Customers since {year}: {mention}.",
                 "We are a {kind} in {place} and customers since {year}."]

OPENINGS = ["Hi,", "Hello,", "Hi team,", "Good morning,", "Dear Emberline,", "Hey,", "", "", "Hello there,",
            "To whom it may concern,"]
CLOSINGS = ["Thanks.", "Thank you!", "Regards, {n}", "Cheers, {n}", "Please advise.", "", "", "Many thanks, {n}",
            "Can you help?", "Please sort this out quickly."]
NAMES = ["Ana", "Ben", "Carla", "Dmitri", "Eva", "Farid", "Greta", "Hugo", "Isla", "Jon", "Kaia", "Leo", "Mona",
         "Nils", "Olga", "Pablo", "Rosa", "Sven", "Tara", "Uma"]


def sentence(text: str) -> str:
    """Capitalise the first letter and end with a full stop unless it already ends in . ? or !"""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."


def first_upper(text: str) -> str:
    return text[0].upper() + text[1:]


def kiln_phrase(rng, own: bool) -> str:
    return rng.choice(KILN_FORMS).format(k=rng.choice(OWN_KILNS if own else RESOLD_KILNS))


def order_no(rng):
    return f"#{rng.randint(10000, 99999)}"


def money(rng):
    return rng.choice(MONEY).format(n=rng.choice([18, 42, 65, 120, 189, 240, 310, 575, 980]))


def body(rng, queue: str) -> str:
    o = order_no(rng)
    if queue in ("OPS-KILN", "RMA-3P"):
        kiln = kiln_phrase(rng, own=queue == "OPS-KILN")
        return rng.choice([
            f"{first_upper(kiln)} {rng.choice(KILN_FAULTS)}.",
            f"We've used {kiln} for a year and now it {rng.choice(KILN_FAULTS)}.",
            f"Problem with {kiln}: it {rng.choice(KILN_FAULTS)}. Serial number S-{rng.randint(1000, 9999)}.",
        ])
    if queue == "QA-GLAZE":
        g = rng.choice(GLAZES)
        return rng.choice([
            f"{first_upper(g)} from order {o} {rng.choice(GLAZE_FAULTS)}.",
            f"The last batch of {g.removeprefix('the ')} {rng.choice(GLAZE_FAULTS)}. Batch code on the tub is B{rng.randint(100, 999)}.",
            f"Complaint: {g} {rng.choice(GLAZE_FAULTS)}; we fired it exactly as instructed.",
        ])
    if queue == "LOGI-FREIGHT":
        if rng.random() < 0.4:  # a kiln damaged in transit, of either maker
            kiln = kiln_phrase(rng, own=rng.random() < 0.5)
            return rng.choice([f"{first_upper(kiln)} {rng.choice(DAMAGE)}.",
                               f"Order {o}: {kiln} {rng.choice(DAMAGE)}. The box looked crushed."])
        item = rng.choice(SHIPPED)
        return rng.choice([f"Order {o}: {item} {rng.choice(DELIVERY_FAULTS)}.",
                           f"{first_upper(item)} {rng.choice(DELIVERY_FAULTS)}.",
                           f"Where is {item}? It {rng.choice(DELIVERY_FAULTS)}. Order {o}."])
    if queue == "T1-LEDGER":
        return sentence(rng.choice(BILLING_ISSUES).format(o=o, m=money(rng)))
    if queue == "TRADE-DESK":
        return sentence(rng.choice(TRADE_ISSUES).format(item=rng.choice(SHIPPED).removeprefix("the ")))
    if queue == "ACCT-GATE":
        issue = rng.choice(ACCOUNT_ISSUES)
        return rng.choice([sentence(issue), f"Since yesterday {issue}.",
                           f"{first_upper(issue)}, customer number C{rng.randint(10000, 99999)}."])
    if queue == "EDU-STUDIO":
        issue = rng.choice(CLASS_ISSUES)
        return rng.choice([sentence(issue), sentence(f"Question about your classes: {issue}")])
    raise ValueError(queue)


def context(rng, queue: str) -> str:
    # A ticket about a kiln names only that kiln: which kiln is faulty must stay unambiguous.
    mentions = [m for m in MENTIONS if "{k}" not in m] if queue in ("OPS-KILN", "RMA-3P", "LOGI-FREIGHT") else MENTIONS
    mention = rng.choice(mentions).format(k=rng.choice(OWN_KILNS + RESOLD_KILNS))
    return rng.choice(CONTEXT_FORMS).format(kind=rng.choice(STUDIO_KINDS), place=rng.choice(PLACES),
                                            mention=mention, Mention=first_upper(mention),
                                            year=rng.randint(2009, 2024))


def ticket(rng, queue: str) -> str:
    name = rng.choice(NAMES)
    problem, ctx = body(rng, queue), context(rng, queue)
    middle = [ctx, problem] if rng.random() < 0.6 else [problem, ctx]
    parts = [rng.choice(OPENINGS), *middle, rng.choice(CLOSINGS).format(n=name)]
    return " ".join(p for p in parts if p)


def make(rng, n: int, seen: set[str]) -> list[dict]:
    rows = []
    while len(rows) < n:
        queue = QUEUES[len(rows) % len(QUEUES)]
        text = ticket(rng, queue)
        if text in seen:
            continue
        seen.add(text)
        rows.append({"question": text, "answer": queue})
    rng.shuffle(rows)
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
        print(f"{name}: {len(rows)} tickets")


if __name__ == "__main__":
    main()
