"""Generate the detect-language example data (seeded, so the files are reproducible).

    python examples/detect-language/make_data.py

A fictional online shop, Lumo Home, receives customer messages in five languages and wants
each one tagged with its language so it reaches a team that speaks it. Every message is two
or three sentences built from phrase lists written for this example: an opening, a request
about an order, and sometimes a closing. Order numbers and product names are the same in
every language, so only the words tell the languages apart.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 5
N_TRAIN_PER_LANGUAGE, N_EVAL_PER_LANGUAGE = 20, 10

PRODUCTS = ["Lumo Arc", "Nordby", "Kesto", "Vela", "Orso", "Tilde"]  # brand names, the same in every language

PHRASES = {
    "English": {
        "open": ["Hello,", "Good morning,", "Hi there,", "Dear Lumo Home team,"],
        "body": [
            "I ordered the {p} last week and it has still not arrived. My order number is {n}.",
            "The {p} from order {n} arrived damaged and I would like a replacement.",
            "Could you tell me when the {p} will be back in stock?",
            "I was charged twice for order {n}. Please refund one of the payments.",
            "I would like to return the {p} because the colour is not what I expected.",
            "Can I change the delivery address for order {n}? We are moving next week.",
            "The assembly instructions for the {p} are missing from the box.",
            "Is it possible to pick up order {n} from your warehouse instead of having it delivered?",
        ],
        "close": ["Thank you in advance.", "Best regards.", "Thanks for your help.", "I look forward to your reply."],
    },
    "French": {
        "open": ["Bonjour,", "Bonsoir,", "Madame, Monsieur,", "Chère équipe de Lumo Home,"],
        "body": [
            "J'ai commandé le {p} la semaine dernière et il n'est toujours pas arrivé. Mon numéro de commande est {n}.",
            "Le {p} de la commande {n} est arrivé abîmé et je voudrais un remplacement.",
            "Pourriez-vous me dire quand le {p} sera de nouveau en stock ?",
            "J'ai été débité deux fois pour la commande {n}. Merci de rembourser un des paiements.",
            "Je voudrais retourner le {p} parce que la couleur ne correspond pas à ce que j'attendais.",
            "Est-ce que je peux changer l'adresse de livraison de la commande {n} ? Nous déménageons la semaine prochaine.",
            "La notice de montage du {p} manque dans le carton.",
            "Est-il possible de retirer la commande {n} à votre entrepôt au lieu de la faire livrer ?",
        ],
        "close": ["Merci d'avance.", "Cordialement.", "Merci pour votre aide.", "Dans l'attente de votre réponse."],
    },
    "German": {
        "open": ["Hallo,", "Guten Tag,", "Sehr geehrte Damen und Herren,", "Liebes Lumo-Home-Team,"],
        "body": [
            "Ich habe letzte Woche das {p} bestellt und es ist immer noch nicht angekommen. Meine Bestellnummer ist {n}.",
            "Das {p} aus der Bestellung {n} ist beschädigt angekommen und ich möchte einen Ersatz.",
            "Können Sie mir sagen, wann das {p} wieder auf Lager ist?",
            "Mir wurde die Bestellung {n} zweimal berechnet. Bitte erstatten Sie eine der Zahlungen.",
            "Ich möchte das {p} zurückgeben, weil die Farbe nicht meinen Erwartungen entspricht.",
            "Kann ich die Lieferadresse für die Bestellung {n} ändern? Wir ziehen nächste Woche um.",
            "Die Montageanleitung für das {p} fehlt im Karton.",
            "Kann ich die Bestellung {n} in Ihrem Lager abholen, statt sie liefern zu lassen?",
        ],
        "close": ["Vielen Dank im Voraus.", "Mit freundlichen Grüßen.", "Danke für Ihre Hilfe.", "Ich freue mich auf Ihre Antwort."],
    },
    "Spanish": {
        "open": ["Hola,", "Buenos días,", "Estimados señores,", "Querido equipo de Lumo Home,"],
        "body": [
            "Pedí el {p} la semana pasada y todavía no ha llegado. Mi número de pedido es {n}.",
            "El {p} del pedido {n} llegó dañado y quisiera un reemplazo.",
            "¿Podrían decirme cuándo volverá a estar disponible el {p}?",
            "Me cobraron dos veces el pedido {n}. Por favor, devuélvanme uno de los pagos.",
            "Quisiera devolver el {p} porque el color no es el que esperaba.",
            "¿Puedo cambiar la dirección de entrega del pedido {n}? Nos mudamos la próxima semana.",
            "Faltan las instrucciones de montaje del {p} en la caja.",
            "¿Es posible recoger el pedido {n} en su almacén en lugar de recibirlo en casa?",
        ],
        "close": ["Gracias de antemano.", "Un saludo cordial.", "Gracias por su ayuda.", "Quedo a la espera de su respuesta."],
    },
    "Italian": {
        "open": ["Buongiorno,", "Salve,", "Gentili signori,", "Caro team di Lumo Home,"],
        "body": [
            "Ho ordinato il {p} la settimana scorsa e non è ancora arrivato. Il mio numero d'ordine è {n}.",
            "Il {p} dell'ordine {n} è arrivato danneggiato e vorrei una sostituzione.",
            "Potreste dirmi quando il {p} sarà di nuovo disponibile?",
            "Mi è stato addebitato due volte l'ordine {n}. Vi prego di rimborsare uno dei pagamenti.",
            "Vorrei restituire il {p} perché il colore non è quello che mi aspettavo.",
            "Posso cambiare l'indirizzo di consegna dell'ordine {n}? Ci trasferiamo la settimana prossima.",
            "Nella scatola mancano le istruzioni di montaggio del {p}.",
            "È possibile ritirare l'ordine {n} presso il vostro magazzino invece di riceverlo a casa?",
        ],
        "close": ["Grazie in anticipo.", "Cordiali saluti.", "Grazie per l'aiuto.", "Resto in attesa di una vostra risposta."],
    },
}


def message(rng: random.Random, language: str) -> str:
    ph = PHRASES[language]
    body = rng.choice(ph["body"]).format(p=rng.choice(PRODUCTS), n=f"LH-{rng.randint(10000, 99999)}")
    parts = [rng.choice(ph["open"]), body]
    if rng.random() < 0.6:
        parts.append(rng.choice(ph["close"]))
    return " ".join(parts)


def make(rng: random.Random, per_language: int, seen: set[str]) -> list[dict]:
    rows = []
    for language in PHRASES:
        n = 0
        while n < per_language:
            text = message(rng, language)
            if text in seen:
                continue
            seen.add(text)
            rows.append({"question": text, "answer": language})
            n += 1
    rng.shuffle(rows)
    return rows


def main() -> None:
    rng = random.Random(SEED)
    seen: set[str] = set()
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    for name, n in (("eval", N_EVAL_PER_LANGUAGE), ("train", N_TRAIN_PER_LANGUAGE)):
        rows = make(rng, n, seen)
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} messages")


if __name__ == "__main__":
    main()
