"""Generate the support-replies example: preference pairs and the help centre (seeded, reproducible).

    python examples/support-replies/make_data.py

Larchmere Home is an invented online furniture shop. Its support team answers customer messages
in a house style: greet the customer by first name, give the answer from the help centre in one
or two sentences, sign off with "— Larchmere Care". Each record is one customer message with two
replies in TRL's preference format (``prompt`` / ``chosen`` / ``rejected``):

- chosen: the reply the team would send (house style, the help centre's facts);
- rejected: a plausible worse reply, one of five kinds a reviewer turns down every day
  (REJECTED_KINDS): a wrong fact in the house style, a friendly non-answer, a refusal,
  a long generic letter with the right fact buried in it, a curt reply without greeting.

Train and eval are different customers, products and wordings about the same 12 help-centre
topics (support questions repeat; what changes is who asks and how). The script also writes
the help centre (docs/, one page per topic) that RAG retrieves from, and checks that every fact
of a chosen reply is on its page, that no wrong fact is, and that no prompt is in both splits.
Names, products and policies are invented for this example.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 11
N_TRAIN, N_EVAL = 90, 40
HERE = Path(__file__).parent
SIGN = "— Larchmere Care"

# name -> kind: "big" items come by two-person delivery; "fabric" items are upholstered.
PRODUCTS = {
    "Wren sofa": "big fabric", "Esk armchair": "fabric", "Alder bed frame": "big", "Tarn dining table": "big",
    "Pike wardrobe": "big", "Colby bookcase": "", "Hollin desk": "", "Marl footstool": "fabric",
    "Rowan corner sofa": "big fabric", "Linnet side table": "", "Fennick chest of drawers": "big",
    "Bryony ottoman bed": "big fabric", "Sorrel dining chairs": "fabric", "Quarry coffee table": "",
}

FIRST = ["Mara", "Tom", "Priya", "Owen", "Ines", "Kwame", "Hanna", "Luis", "Aoife", "Dmitri", "Sade", "Felix",
         "Yara", "Callum", "Mei", "Jonas", "Ruth", "Ade", "Leila", "Bram", "Nina", "Oskar", "Tess", "Rafael",
         "Zainab", "Hugo", "Ellen", "Tariq", "Greta", "Idris"]
LAST = ["Holt", "Patel", "Voss", "Haddad", "Ruiz", "Brandt", "Okafor", "Lund", "Quinn", "Moreau", "Silva",
        "Novak", "Aziz", "Berg", "Chen", "Dalton", "Mensah", "Rao", "Weber", "Costa"]
OPEN = ["Hi,", "Hello,", "Hi there,", "Good morning,", ""]
CLOSE = ["Thanks, {f} {l}", "Cheers, {f}", "Best, {f} {l}", "{f}", "Many thanks, {f}"]

# One help-centre topic each: its page, the customer's questions ({p} a product), the house
# answer, the same answer with a plausible wrong fact (the value a generic reply would guess),
# the curt version, and which products it is asked about.
TOPICS = [
    dict(key="returns", title="Returns",
         page="You can return most items within 45 days of delivery. Start a return from Orders > Return an item "
              "in your account and we email you a free return label.",
         facts=["45 days", "Orders > Return an item", "free return label"],
         questions=["The {p} arrived three weeks ago and doesn't suit the room. Can I still send it back?",
                    "How long do I have to return the {p}?",
                    "We changed our minds about the {p}. Is it too late to return it? It came last month.",
                    "What's your returns policy? I'm thinking of sending back the {p}."],
         answer="you have 45 days from delivery to return it. Start from Orders > Return an item and we'll email "
                "you a free return label.",
         wrong="you have 14 days from delivery to return it. Start from Orders > Return an item and we'll email "
               "you a free return label.",
         wrong_facts=["14 days"], curt="45 days. Use the returns page.", products="any"),
    dict(key="refunds", title="Refunds",
         page="Refunds go back to the original payment method within 5 working days of the returned item "
              "reaching our warehouse.",
         facts=["original payment method", "5 working days"],
         questions=["I sent the {p} back last week. When will I get my money?",
                    "How long does a refund take? The {p} is on its way back to you.",
                    "Will my refund for the {p} come back to my card?"],
         answer="the refund goes back to your original payment method within 5 working days of the {p} reaching "
                "our warehouse.",
         wrong="the refund comes as store credit within 30 working days of the {p} reaching our warehouse.",
         wrong_facts=["store credit", "30 working days"], curt="5 working days after it arrives.", products="any"),
    dict(key="delivery", title="Standard delivery",
         page="Standard delivery takes 3 to 5 working days. It is free on orders over £80; below that it costs "
              "£4.95.",
         facts=["3 to 5 working days", "£80", "£4.95"],
         questions=["How long will the {p} take to arrive?",
                    "I'm about to order the {p}. When would it get to me?",
                    "What does delivery cost, and how quickly does the {p} come?"],
         answer="standard delivery takes 3 to 5 working days, and it's free on orders over £80 (£4.95 below that).",
         wrong="standard delivery takes 10 to 14 working days, and it's free on orders over £150 (£9.95 below that).",
         wrong_facts=["10 to 14 working days", "£150", "£9.95"], curt="3 to 5 working days.", products="small"),
    dict(key="big-delivery", title="Two-person delivery",
         page="Sofas, beds, tables and wardrobes come by two-person delivery to the room of your choice. We text "
              "you two days before to book a 2-hour slot.",
         facts=["two-person delivery", "room of your choice", "two days before", "2-hour slot"],
         questions=["How will the {p} be delivered? We're on the third floor.",
                    "Do your drivers carry the {p} inside, or just leave it at the door?",
                    "Can I choose a delivery time for the {p}?"],
         answer="the {p} comes by two-person delivery to the room of your choice. We'll text you two days before "
                "to book a 2-hour slot.",
         wrong="the {p} is left at your front door by one driver. We'll email you on the day with a 10-hour "
               "window.",
         wrong_facts=["front door", "10-hour"], curt="Two people bring it. You'll get a text.", products="big"),
    dict(key="warranty", title="Guarantee",
         page="Frames of sofas, beds, tables and wardrobes are guaranteed for 10 years. Fabrics, cushions and "
              "mechanisms are guaranteed for 2 years. Report a fault from Orders > Report a problem with a photo.",
         facts=["10 years", "Orders > Report a problem", "photo"],
         questions=["The frame of my {p} has cracked after three years. Is that covered?",
                    "How long is the guarantee on the {p} frame?",
                    "A leg joint on the {p} frame split. We bought it four years ago. What can you do?"],
         answer="frames are guaranteed for 10 years, so this is covered. Send a photo from Orders > Report a "
                "problem and we'll arrange the repair.",
         wrong="frames are guaranteed for 1 year, so this isn't covered. You could try a local repair shop.",
         wrong_facts=["1 year"], curt="10-year frame guarantee. Report it online.", products="big"),
    dict(key="damaged", title="Damaged on arrival",
         page="If something arrives damaged, report it within 14 days of delivery from Orders > Report a problem "
              "with a photo. We send a replacement part or item free of charge.",
         facts=["14 days", "Orders > Report a problem", "photo", "free of charge"],
         questions=["The {p} arrived with a deep scratch on top. What now?",
                    "One panel of the {p} was cracked when we unpacked it yesterday.",
                    "The {p} came damaged. Do I have to send the whole thing back?"],
         answer="sorry about that. Send us a photo from Orders > Report a problem within 14 days of delivery and "
                "we'll send a replacement part or item free of charge.",
         wrong="sorry about that. Please post the {p} back to us at your own cost and we'll inspect it within "
               "six weeks.",
         wrong_facts=["your own cost", "six weeks"], curt="Report it online with a photo.", products="any"),
    dict(key="cancel", title="Changing or cancelling an order",
         page="You can change or cancel an order within 2 hours of placing it from Orders > Edit order. After "
              "that it is being packed: wait for delivery and return it for free.",
         facts=["2 hours", "Orders > Edit order", "return it for free"],
         questions=["I ordered the {p} this morning by mistake. Can I cancel?",
                    "Can I change the colour of the {p} I ordered an hour ago?",
                    "I need to cancel my order for the {p}, placed yesterday."],
         answer="orders can be changed or cancelled within 2 hours from Orders > Edit order. After that, wait "
                "for delivery and return it for free.",
         wrong="orders can be changed or cancelled any time before dispatch by phoning us. There's a £25 "
               "cancellation fee.",
         wrong_facts=["£25"], curt="Only within 2 hours of ordering.", products="any"),
    dict(key="price-drop", title="Price drops",
         page="If the price of your item drops within 14 days of delivery, we refund the difference. Ask in live "
              "chat with your order number.",
         facts=["14 days", "refund the difference", "live chat", "order number"],
         questions=["The {p} I bought is now on sale for less. Can I get the difference back?",
                    "I paid full price for the {p} last week and now it's reduced. Any chance of a partial refund?",
                    "Do you price-match? The {p} dropped in price right after it arrived."],
         answer="yes: if the price drops within 14 days of delivery, we refund the difference. Just send us your "
                "order number in live chat.",
         wrong="sorry, we can't refund price differences after an order is placed. Sale prices only apply to "
               "new orders.",
         wrong_facts=["can't refund price differences"], curt="Within 14 days only. Use chat.", products="any"),
    dict(key="swatches", title="Fabric swatches",
         page="You can order up to 6 fabric swatches free of charge. They arrive in 2 to 3 working days.",
         facts=["6 fabric swatches", "free of charge", "2 to 3 working days"],
         questions=["Can I see the fabric of the {p} before I buy it?",
                    "Do you send fabric samples for the {p}? How much are they?",
                    "I can't decide on a colour for the {p}. Can I get swatches?"],
         answer="you can order up to 6 fabric swatches free of charge, and they arrive in 2 to 3 working days.",
         wrong="swatches cost £3 each, up to 3 per customer, and they arrive in about 2 weeks.",
         wrong_facts=["£3 each", "2 weeks"], curt="Up to 6 free swatches.", products="fabric"),
    dict(key="codes", title="Discount codes",
         page="One discount code can be used per order, entered at checkout. A code cannot be added to an order "
              "that has already been placed.",
         facts=["One discount code", "per order", "checkout", "already been placed"],
         questions=["I forgot to use my discount code when I ordered the {p}. Can you add it now?",
                    "Can I use two discount codes on the {p}?",
                    "My welcome code didn't go through on the {p} order. Can you apply it?"],
         answer="one discount code can be used per order, entered at checkout, and it can't be added to an "
                "order that has already been placed.",
         wrong="no problem, we can add any number of codes to an order after it's placed. Just reply with the "
               "codes.",
         wrong_facts=["any number of codes"], curt="Codes only work at checkout.", products="any"),
    dict(key="assembly", title="Assembly service",
         page="Our assembly service costs £35 per item. Book it at checkout or up to 48 hours before delivery.",
         facts=["£35 per item", "checkout", "48 hours before delivery"],
         questions=["Can someone assemble the {p} for me?",
                    "How much is assembly for the {p}?",
                    "Is it too late to add assembly to my {p} order? It's coming next week."],
         answer="our assembly service is £35 per item. You can book it at checkout or up to 48 hours before "
                "delivery.",
         wrong="assembly is included free with every order, so there's nothing to book.",
         wrong_facts=["included free"], curt="£35. Book it online.", products="big"),
    dict(key="chat", title="Contact us",
         page="Live chat is open from 8am to 8pm, Monday to Saturday. Messages sent outside those hours are "
              "answered the next morning.",
         facts=["8am to 8pm", "Monday to Saturday", "next morning"],
         questions=["When can I talk to someone about my {p} order?",
                    "What are your opening hours? I have a question about the {p}.",
                    "Is your chat open on Sundays? It's about the {p}."],
         answer="live chat is open from 8am to 8pm, Monday to Saturday, and messages sent outside those hours are "
                "answered the next morning.",
         wrong="live chat is open 24 hours a day, 7 days a week, so you can reach us any time.",
         wrong_facts=["24 hours a day"], curt="8 to 8, Monday to Saturday.", products="any"),
]

VAGUE = ["thanks for getting in touch. You'll find everything about this in our help centre.",
         "thanks for your message. We've passed it on to the right team and they'll be in touch.",
         "thanks for asking. Please have a look at the FAQ section of our website for the details."]
REFUSAL = ["I'm sorry, but I can't help with that request. Please contact customer service.",
           "I'm sorry, I'm not able to answer questions about orders. Please reach out to the retailer directly.",
           "Unfortunately I can't assist with this. Please contact our support team for help."]
LONG_OPEN = ["Dear {f},\n\nThank you so much for reaching out to us, and we sincerely apologise for any "
             "inconvenience this may have caused.",
             "Dear {f},\n\nThank you for contacting the Larchmere Home customer service team. Your satisfaction "
             "is our number one priority."]
LONG_CLOSE = ("If you have any other questions at all, please don't hesitate to get in touch with us again."
              "\n\nKind regards,\nThe Larchmere Home Customer Service Team")
REJECTED_KINDS = ("wrong_fact", "non_answer", "refusal", "too_long", "curt")


def products_for(topic: dict) -> list[str]:
    want = topic["products"]
    if want == "any":
        return list(PRODUCTS)
    if want == "small":
        return [p for p, k in PRODUCTS.items() if "big" not in k]
    return [p for p, k in PRODUCTS.items() if want in k]


def sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def rejected(kind: str, topic: dict, product: str, first: str, rng: random.Random) -> str:
    if kind == "wrong_fact":
        return f"Hi {first}, {topic['wrong'].format(p=product)}\n{SIGN}"
    if kind == "non_answer":
        return f"Hi {first}, {rng.choice(VAGUE)}\n{SIGN}"
    if kind == "refusal":
        return rng.choice(REFUSAL)
    if kind == "too_long":
        return (f"{rng.choice(LONG_OPEN).format(f=first)} {sentence(topic['answer'].format(p=product))} "
                f"{LONG_CLOSE}")
    return topic["curt"]


def make(rng: random.Random, n: int, seen: set[str]) -> list[dict]:
    rows = []
    kinds = [REJECTED_KINDS[i % len(REJECTED_KINDS)] for i in range(n)]
    rng.shuffle(kinds)
    while len(rows) < n:
        topic = TOPICS[len(rows) % len(TOPICS)] if len(rows) < n - n % len(TOPICS) else rng.choice(TOPICS)
        product = rng.choice(products_for(topic))
        first, last = rng.choice(FIRST), rng.choice(LAST)
        body = rng.choice(topic["questions"]).format(p=product)
        prompt = "\n".join(x for x in (rng.choice(OPEN), body, rng.choice(CLOSE).format(f=first, l=last)) if x)
        if prompt in seen:
            continue
        seen.add(prompt)
        kind = kinds[len(rows)]
        rows.append({"prompt": prompt,
                     "chosen": f"Hi {first}, {topic['answer'].format(p=product)}\n{SIGN}",
                     "rejected": rejected(kind, topic, product, first, rng),
                     "topic": topic["key"], "rejected_kind": kind})
    rng.shuffle(rows)
    return rows


def check() -> None:
    problems = []
    for t in TOPICS:
        page = t["page"].lower()
        problems += [f"{t['key']}: fact {f!r} not on its page" for f in t["facts"] if f.lower() not in page]
        problems += [f"{t['key']}: fact {f!r} not in the chosen answer" for f in t["facts"]
                     if f.lower() not in t["answer"].lower() and f.lower() not in ("photo",)]
        problems += [f"{t['key']}: wrong fact {f!r} is on the page" for f in t["wrong_facts"] if f.lower() in page]
        problems += [f"{t['key']}: wrong fact {f!r} not in the wrong answer" for f in t["wrong_facts"]
                     if f.lower() not in t["wrong"].lower()]
        if not products_for(t):
            problems.append(f"{t['key']}: no product to ask about")
    if problems:
        raise SystemExit("\n".join(problems))


def main() -> None:
    check()
    rng = random.Random(SEED)
    seen: set[str] = set()
    (HERE / "data").mkdir(exist_ok=True)
    for name, n in (("eval", N_EVAL), ("train", N_TRAIN)):
        rows = make(rng, n, seen)
        with open(HERE / "data" / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} pairs")
    docs = HERE / "docs"
    docs.mkdir(exist_ok=True)
    for i, t in enumerate(TOPICS, 1):
        (docs / f"{i:02d}-{t['key']}.md").write_text(
            f"# Larchmere Home help centre: {t['title']}\n\n{t['page']}\n", encoding="utf-8")
    print(f"docs: {len(TOPICS)} help-centre pages")


if __name__ == "__main__":
    main()
