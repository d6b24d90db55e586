"""Write data/train.jsonl and data/eval.jsonl for the manual-qa example, and check them.

    python examples/manual-qa/make_data.py

The corpus in docs/ is a fictional manual for the "Orrin Kestrel" heat pumps, written for
this project. Each question below asks for one fact from it; "E" questions go to the eval
split and "T" questions to train. No fact is asked about in both splits, so a fine-tuned
model cannot memorise the eval answers: it would have to know the manual, which only
retrieval gives it. The script checks that every answer appears in the docs and that no
answer is shared between the splits.
"""
from __future__ import annotations

import json
import re
import string
from pathlib import Path

HERE = Path(__file__).parent

# (split, question, short answer)
QA = [
    # 01-overview
    ("T", "What is the nominal heat output of the Kestrel HP-6?", "6.2 kW"),
    ("E", "What is the nominal heat output of the Kestrel HP-12?", "12.6 kW"),
    ("T", "How much does the Kestrel HP-9 outdoor unit weigh?", "88 kg"),
    ("E", "How much does the Kestrel HP-12 outdoor unit weigh?", "104 kg"),
    ("T", "Where are Kestrel heat pumps assembled?", "Brannmoor"),
    ("E", "Who is the lead designer of the Kestrel family?", "Ilse Marrow"),
    ("T", "In which month and year was the first Kestrel launched?", "March 2019"),
    ("T", "Which letters do Kestrel serial numbers start with?", "KX"),
    ("T", "What is the refrigerant charge of the Kestrel HP-6?", "0.62 kg"),
    # 02-safety
    ("T", "How close to an open outdoor unit may an open flame be?", "3 metres"),
    ("E", "Which card must a technician hold to open the refrigerant circuit?", "F-Gas Plus"),
    ("T", "How long must you wait after isolating the unit before opening the electrical cover?", "5 minutes"),
    ("E", "What symbol is on the orange warning label of the electrical cover?", "ZAP-3"),
    ("T", "At what pressure does the factory-set safety valve open?", "2.8 bar"),
    ("T", "How wide is the gap in the fan grille?", "9 millimetres"),
    ("E", "Which form is used to report a refrigerant leak, fire or electric shock?", "SF-19"),
    ("T", "Within how many hours must a safety incident be reported to the Orrin safety desk?", "24 hours"),
    # 03-in-the-box
    ("T", "What is the part code of the HP-9 outdoor unit?", "OU-9000"),
    ("E", "What is the part code of the anti-vibration feet?", "AVF-40"),
    ("T", "What is the part code of the condensate drain elbow?", "CDE-16"),
    ("E", "What is the part code of the indoor hydraulic module?", "IHM-9"),
    ("T", "What is the part code of the outdoor temperature sensor?", "OTS-5"),
    ("T", "How long are the flexible hoses in carton B?", "650 millimetres"),
    ("E", "Which form is used to report missing or damaged parts in the delivery?", "DC-7"),
    ("T", "Within how many hours must the delivery be checked?", "48 hours"),
    # 04-siting
    ("T", "What clearance is needed behind the outdoor unit?", "300 millimetres"),
    ("E", "What clearance is needed on the right side (service side) of the outdoor unit?", "600 millimetres"),
    ("T", "What clearance is needed on the left side of the outdoor unit?", "250 millimetres"),
    ("T", "How high must the concrete plinth be?", "150 millimetres"),
    ("E", "Which wall bracket can carry the outdoor unit?", "WB-90"),
    ("T", "What load is the wall bracket rated for?", "140 kg"),
    ("T", "What is the maximum pipe run between the outdoor unit and the indoor hydraulic module?", "22 metres"),
    ("T", "What is the rule about distance from a neighbour's bedroom window called?", "quiet-side rule"),
    # 05-electrical
    ("T", "What size of circuit breaker protects the HP-9 supply?", "25 amperes"),
    ("T", "What is the trip current of the residual current device?", "30 milliamperes"),
    ("T", "What cable cross-section is needed for supply runs up to 25 metres?", "4 square millimetres"),
    ("E", "What is the two-wire bus between the outdoor unit and the indoor module called?", "OrrinLink"),
    ("T", "What is the maximum length of the communication bus?", "80 metres"),
    ("E", "Which terminal block has the bus terminals L1 and L2?", "TB-3"),
    ("T", "What is the mode called when the grid operator closes the smart-grid contact?", "Boost Window"),
    ("E", "What must the earth resistance at the outdoor unit be below?", "0.8 ohm"),
    ("T", "Which terminal block has the smart-grid input?", "TB-5"),
    # 06-hydraulics
    ("T", "What outside diameter should the pipes to the outdoor unit have?", "28 millimetres"),
    ("T", "What is the minimum flow rate through the outdoor unit?", "16 litres per minute"),
    ("T", "How much water must the heating system hold at least?", "45 litres"),
    ("T", "Which buffer tank is installed when zone valves can close off most radiators?", "BT-50"),
    ("T", "To what cold pressure should the heating system be filled?", "1.4 bar"),
    ("T", "How many litres does the expansion vessel in the indoor module hold?", "12 litres"),
    ("E", "What are the freeze-protection valves called?", "FPV-2"),
    ("T", "What concentration of propylene glycol does Orrin allow?", "30 percent"),
    # 07-commissioning
    ("T", "At what pressure is the water circuit pressure-tested during commissioning?", "4 bar"),
    ("T", "What is the commissioning code for the installer menu?", "7719"),
    ("E", "What is the air-purge program called?", "Vent Cycle"),
    ("T", "In which sheet are the commissioning readings recorded?", "CS-12"),
    ("T", "Which heating curve does Orrin recommend for underfloor heating?", "0.4"),
    ("T", "Which heating curve does Orrin recommend for old radiators?", "0.9"),
    ("T", "With which letters does a commissioning number start?", "CN"),
    # 08-controller
    ("T", "What is the part code of the Lumo wall controller?", "LC-220"),
    ("E", "What is the rotary knob on the Lumo controller called?", "TwistKey"),
    ("T", "How large is the screen of the Lumo controller?", "4.3-inch"),
    ("T", "How many time blocks per day can a schedule have?", "6 time blocks"),
    ("T", "What is the default user PIN of the Lumo?", "0000"),
    ("E", "Which installer menu option resets a forgotten user PIN?", "Clear Lock"),
    ("T", "After how many seconds does the Lumo screen dim?", "45 seconds"),
    ("T", "What is the factory brightness setting of the Lumo?", "level 5"),
    # 09-operating-modes
    ("T", "For how long at a time does hot water have priority in Auto mode?", "50 minutes"),
    ("E", "Which mode lowers the room target by 2 kelvin during the night blocks?", "Eco Drift"),
    ("T", "At what temperature does Holiday mode keep the rooms?", "12 °C"),
    ("T", "For up to how many days can Holiday mode be set?", "99 days"),
    ("T", "What is the fan speed cap in Quiet Hours?", "550 revolutions per minute"),
    ("T", "To what temperature does the anti-legionella cycle heat the hot water tank?", "65 °C"),
    ("T", "What is the lowest allowed flow temperature in cooling?", "18 °C"),
    # 10-error-codes
    ("T", "Which error code means the outdoor temperature sensor is an open circuit?", "E-12"),
    ("E", "Which error code means the OrrinLink bus was lost for more than 60 seconds?", "E-19"),
    ("T", "Which error code means the water flow is too low?", "E-31"),
    ("E", "Which error code means the high-pressure switch tripped?", "E-44"),
    ("T", "Which error code means the inverter overheated?", "E-58"),
    ("E", "Which error code means the compressor failed to start three times?", "E-63"),
    ("T", "Which warning code means a defrost took longer than 12 minutes?", "W-05"),
    ("E", "Which warning code means the system pressure is below 0.7 bar?", "W-21"),
    ("T", "Which warning code means the hot water tank sensor is out of range?", "W-40"),
    ("E", "Which service key does an installer need to reset a locked-out unit?", "SK-4"),
    # 11-maintenance
    ("T", "How often should the magnetic dirt filter be cleaned?", "every 3 months"),
    ("E", "Which checklist does the annual service follow?", "AS-8"),
    ("T", "About how long does the annual service take?", "75 minutes"),
    ("E", "What is the anti-corrosion coating on the evaporator fins called?", "MarineShield"),
    ("T", "Through which service port is the operating log downloaded?", "USB-S"),
    ("T", "Above what resistance is the drain heater fuse replaced?", "3 ohm"),
    # 12-defrost
    ("E", "What does Orrin call its defrost logic?", "SmartThaw"),
    ("T", "How many minutes must pass since the last defrost before a new one starts?", "35 minutes"),
    ("T", "What is the power of the drain heater?", "40-watt"),
    ("T", "Which installer menu option forces a defrost?", "Force Thaw"),
    # 13-noise-and-performance
    ("E", "What is the sound power level of the HP-9 in normal operation?", "54 dB(A)"),
    ("T", "What is the sound power level of the HP-9 in Quiet Hours?", "49 dB(A)"),
    ("E", "What is the COP of the HP-9 at air 7 °C and water 35 °C?", "4.87"),
    ("T", "What is the COP of the HP-9 at air -7 °C and water 35 °C?", "2.96"),
    ("T", "Down to what outdoor temperature does the HP-9 heat?", "-25 °C"),
    ("E", "Who builds the compressor of the HP-9?", "Saltrey"),
    ("T", "What is the model of the HP-9 compressor?", "SRX-33"),
    # 14-refrigerant
    ("T", "Which gas is used to leak-test the refrigerant circuit at the factory?", "helium"),
    ("E", "At what pressure does the high-pressure switch open?", "31 bar"),
    ("T", "What is the gas sensor at the bottom of the outdoor unit called?", "R290 Sentinel"),
    ("E", "Which error code does the gas sensor show when it detects propane?", "E-77"),
    ("T", "Which screws hold the right-hand service panel?", "Torx T25"),
    ("E", "In which log book must work on the refrigerant circuit be logged?", "RL-3"),
    # 15-spare-parts
    ("T", "What is the part code of the fan motor?", "FM-310"),
    ("E", "What is the part code of the expansion valve?", "EXV-8"),
    ("T", "What is the part code of the inverter board?", "INV-9B"),
    ("E", "What is the part code of the circulation pump?", "CP-75"),
    ("T", "How much does the fan blade cost?", "58 euros"),
    ("E", "How much does the inverter board cost?", "489 euros"),
    ("T", "Where is the Orrin parts warehouse?", "Fenby"),
    ("T", "What is the part code of the coil temperature sensor?", "CTS-2"),
    # 16-warranty
    ("T", "How long is the standard warranty on a Kestrel?", "3 years"),
    ("T", "How long does the extended warranty cover the compressor?", "9 years"),
    ("T", "What is the extended warranty called?", "Orrin Assure"),
    ("T", "Within how many days of the due date can a missed service be made up?", "60 days"),
    ("T", "Which form does the installer use for a warranty claim?", "WC-2"),
    ("T", "Within how many working days does Orrin answer a warranty claim?", "5 working days"),
    # 17-returns-and-repairs
    ("T", "Within how many days can unused accessories be returned?", "21 days"),
    ("T", "With which letters do return authorisation numbers start?", "RA"),
    ("T", "What is the flat fee for a repair outside warranty?", "95 euros"),
    ("T", "How long does a repair at the Orrin repair centre take?", "10 working days"),
    ("T", "Within how many days must a loan controller be returned?", "14 days"),
    # 18-installer-programme
    ("T", "What is the highest installer certification level?", "Falcon"),
    ("T", "How many days does the Bronze course take?", "2 days"),
    ("T", "How many commissioned installations does the Falcon level need?", "25"),
    ("T", "For how many months is an installer certificate valid?", "24 months"),
    ("T", "Who is the partner manager for the North region?", "Tove Lindqvist"),
    ("E", "Who is the partner manager for the East region?", "Petra Nowicka"),
    ("T", "Who is the partner manager for the West region?", "Callum Reid"),
    ("E", "Who is the head of the installer programme?", "Ines Okonkwo"),
    ("T", "How many Orrin points does an installer earn for each registered installation?", "40"),
    # 19-support-contacts
    ("T", "When does the installer hotline open on weekdays?", "07:30"),
    ("E", "Who leads the Orrin customer service team?", "Marguerite Fell"),
    ("T", "Within how many working days does customer service answer messages?", "2 working days"),
    ("E", "Which company runs the emergency line?", "Nightwatch Services"),
    ("T", "How much is the call-out fee for an emergency visit?", "120 euros"),
    ("E", "Who is the managing director of Orrin Thermal?", "Henrik Aldous"),
    ("T", "What is the address of Orrin Thermal's headquarters?", "Quay Street 14"),
    # 20-app-and-connectivity
    ("T", "What is the part code of the Wi-Fi module?", "WM-3"),
    ("E", "Into which slot on the main board does the Wi-Fi module plug?", "X7"),
    ("T", "For how long is the app pairing code valid?", "10 minutes"),
    ("T", "How many months of history does the Orrin Home app keep?", "36 months"),
    ("T", "How many days after removal from the app is the operating data deleted?", "90 days"),
    ("E", "What is the current firmware series called?", "Larkspur"),
    ("T", "At what time are firmware updates installed?", "03:00"),
    # 21-accessories
    ("T", "What is the code of the 200-litre hot water tank?", "HWT-200"),
    ("E", "What is the code of the room sensor?", "RS-11"),
    ("T", "What is the code of the acoustic hood?", "AH-7"),
    ("E", "What is the code of the cooling kit?", "CK-2"),
    ("T", "Which kit adds a second heating circuit?", "ZK-2"),
    ("E", "What is the code of the electric backup heater?", "BH-3"),
    ("T", "What is the default bivalent point?", "-12 °C"),
    # 22-disposal-and-environment
    ("E", "What is Orrin's take-back scheme called?", "Second Nest"),
    ("T", "Which recycling partner receives the recovered R290?", "Greyling Gas"),
    ("E", "What colour is the casing of the outdoor unit?", "Fjord Grey"),
    ("T", "What share of the outdoor unit is recyclable by weight?", "81 percent"),
    ("T", "How much CO2 per year does an HP-9 save when it replaces an old gas boiler?", "3.4 tonnes"),
]


def _norm(text: str) -> str:  # the same normalisation as the `contains` metric
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def main() -> None:
    corpus = _norm(" ".join(p.read_text(encoding="utf-8") for p in sorted((HERE / "docs").glob("*.md"))))
    problems = []
    for split, q, a in QA:
        if not re.search(rf"(?<!\w){re.escape(_norm(a))}(?!\w)", corpus):
            problems.append(f"answer not in docs: {a!r} ({q})")
    train_answers = {_norm(a) for s, _, a in QA if s == "T"}
    for s, q, a in QA:
        if s == "E" and _norm(a) in train_answers:
            problems.append(f"eval answer also a train answer: {a!r}")
    if problems:
        raise SystemExit("\n".join(problems))
    (HERE / "data").mkdir(exist_ok=True)
    for split, name in (("T", "train"), ("E", "eval")):
        rows = [{"question": q, "answer": a} for s, q, a in QA if s == split]
        with open(HERE / "data" / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} questions")


if __name__ == "__main__":
    main()
