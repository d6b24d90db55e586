"""Generate the world-capitals example data (seeded, so the files are reproducible).

    python examples/world-capitals/make_data.py

A quiz app asks for the capital city of a country. The base model learned these facts in
pre-training; nothing in this task is company knowledge. Countries whose capital is disputed,
split between cities, or commonly written with accents are left out, so that every reference
is one plain, unambiguous name. Train and eval ask about different countries.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 3
N_EVAL = 48

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
    "Canada": "Ottawa", "Australia": "Canberra", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima",
    "Norway": "Oslo", "Poland": "Warsaw", "Greece": "Athens", "Portugal": "Lisbon", "Chile": "Santiago",
    "Thailand": "Bangkok", "Russia": "Moscow", "China": "Beijing", "India": "New Delhi",
    "Argentina": "Buenos Aires", "Mexico": "Mexico City", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Ireland": "Dublin", "Austria": "Vienna", "Hungary": "Budapest",
    "the Czech Republic": "Prague", "Belgium": "Brussels", "the Netherlands": "Amsterdam", "Turkey": "Ankara",
    "Iran": "Tehran", "Iraq": "Baghdad", "Saudi Arabia": "Riyadh", "Pakistan": "Islamabad",
    "Bangladesh": "Dhaka", "Vietnam": "Hanoi", "Indonesia": "Jakarta", "the Philippines": "Manila",
    "South Korea": "Seoul", "North Korea": "Pyongyang", "Malaysia": "Kuala Lumpur", "New Zealand": "Wellington",
    "Nigeria": "Abuja", "Ghana": "Accra", "Ethiopia": "Addis Ababa", "Morocco": "Rabat", "Algeria": "Algiers",
    "Tunisia": "Tunis", "Venezuela": "Caracas", "Cuba": "Havana", "Ukraine": "Kyiv", "Romania": "Bucharest",
    "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb", "Afghanistan": "Kabul", "Syria": "Damascus",
    "Lebanon": "Beirut", "Jordan": "Amman", "Qatar": "Doha", "Nepal": "Kathmandu", "Mongolia": "Ulaanbaatar",
    "Uruguay": "Montevideo", "Ecuador": "Quito", "Jamaica": "Kingston", "Estonia": "Tallinn", "Latvia": "Riga",
    "Lithuania": "Vilnius", "Slovakia": "Bratislava", "Slovenia": "Ljubljana", "Albania": "Tirana",
    "Cyprus": "Nicosia", "Malta": "Valletta", "Uganda": "Kampala", "Zimbabwe": "Harare", "Senegal": "Dakar",
    "Sudan": "Khartoum", "Libya": "Tripoli", "Cambodia": "Phnom Penh", "Laos": "Vientiane", "Georgia": "Tbilisi",
    "Armenia": "Yerevan", "Belarus": "Minsk", "the United States": "Washington", "the United Kingdom": "London",
    "Zambia": "Lusaka", "Angola": "Luanda", "Mali": "Bamako", "Niger": "Niamey", "Somalia": "Mogadishu",
    "Yemen": "Sanaa", "Oman": "Muscat", "Kuwait": "Kuwait City", "Panama": "Panama City", "Honduras": "Tegucigalpa",
    "Nicaragua": "Managua", "Guatemala": "Guatemala City",
}

QUESTIONS = ["What is the capital of {c}?", "Which city is the capital of {c}?", "Name the capital city of {c}.",
             "What city is the capital of {c}?"]


def main() -> None:
    rng = random.Random(SEED)
    countries = sorted(CAPITALS)
    rng.shuffle(countries)
    splits = {"eval": countries[:N_EVAL], "train": countries[N_EVAL:]}
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    for name, chosen in splits.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for c in chosen:
                q = rng.choice(QUESTIONS).format(c=c)
                f.write(json.dumps({"question": q[0].upper() + q[1:], "answer": CAPITALS[c]}, ensure_ascii=False) + "\n")
        print(f"{name}: {len(chosen)} questions")


if __name__ == "__main__":
    main()
