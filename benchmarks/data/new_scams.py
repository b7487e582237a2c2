"""Writes new_scams.csv: a spam style the 2011 SMS Spam Collection lacks, for benchmarks/feedback_loop.py.

Two scam patterns of the 2020s, each in 30 hand-written message templates: fake parcel-delivery fees ("your parcel
is on hold, pay £1.99 here") and "hi mum, this is my new number" impersonation. Beside them, the ham a filter must
not block in their place: 30 templates of ordinary messages about parcels (people and real delivery notices) and
30 of ordinary family messages (including real new numbers and real talk about money). Each template is filled 4
times from small lists of carriers, shops, names, amounts and links, so a template (`family`) is a unit: the
benchmark streams some families and measures on the others, so a catch rate is never a template seen before.

The CSV is kept in the repository (the benchmark's own data, not an evaluation set of spamtune's); run this only to
change it:

    python -m benchmarks.data.new_scams     # rewrites benchmarks/data/new_scams.csv (seed 2026)
"""

from __future__ import annotations

import csv
import random
import string
from pathlib import Path

OUT = Path(__file__).with_name("new_scams.csv")
VARIANTS = 4

PARCEL_SCAM = [
    "{carrier}: Your parcel is on hold due to an unpaid shipping fee of {fee}. Please pay here to arrange delivery: "
    "{url}",
    "{carrier}: We missed you today. Your parcel will be returned to the sender unless you reschedule your delivery "
    "at {url}",
    "Your {carrier} package could not be delivered due to an incomplete address. Please update your details within "
    "24 hours: {url}",
    "{carrier} ALERT: A parcel addressed to you is awaiting a customs charge of {fee}. Pay now to avoid return: {url}",
    "Hi, your {carrier} delivery is scheduled but we need you to confirm your address. Confirm now: {url}",
    "We tried to deliver your parcel today but no one was in. Book a new slot here: {url} - {carrier}",
    "{carrier}: your item {ref} is being held at our depot. A redelivery fee of {fee} applies. {url}",
    "FINAL NOTICE: your {carrier} parcel {ref} will be destroyed in 48hrs if the outstanding fee of {fee} is not "
    "paid {url}",
    "{carrier} - Your package has arrived at the warehouse but cannot be delivered due to incorrect house number. "
    "Update: {url}",
    "Your parcel has a pending payment. To schedule delivery go to {url} . {carrier}",
    "{carrier}: Unfortunately we were unable to deliver your parcel. To rearrange please visit {url} (fee {fee})",
    "Dear customer, your {carrier} shipment {ref} is suspended. Confirm your payment details at {url} to release it",
    "Your package is waiting for delivery. Please confirm the settlement of {fee} on the following link: {url}",
    "{carrier}: Parcel {ref} not delivered. Address label damaged. Re-enter your address at {url} within 12 hours",
    "Reminder: your {carrier} parcel is still at the sorting office. Small fee of {fee} to release. {url} Reply STOP "
    "to opt out",
    "{carrier}: You have 1 package pending. Track and pay the import duty {fee} here {url}",
    "Hello, this is {carrier}. Your delivery failed twice. Last chance to reschedule: {url}",
    "We have a parcel for you from {shop}! Delivery is on hold until you verify your details at {url}. {carrier}",
    "{carrier} UK: your parcel {ref} requires a signature & a fee of {fee}. Click {url} to select a new date",
    "Your {shop} order could not be delivered by {carrier}. Update your delivery preferences at {url}",
    "URGENT {carrier}: we have been unable to deliver parcel {ref}. Please complete the form at {url} or it will be "
    "returned",
    "{carrier}: a delivery fee of {fee} is due on your parcel. Pay by card before 23:59 today: {url}",
    "Your parcel from {shop} is held at customs. VAT of {fee} must be paid: {url} ({carrier})",
    "Missed delivery! {carrier} couldn't reach you. Choose a redelivery date now {url}",
    "{carrier}: The address on your parcel is wrong. To avoid it being sent back, fix it here {url} Ref: {ref}",
    "Notice: the {carrier} courier could not find your address. Please confirm it at {url} so we can try again "
    "tomorrow",
    "{carrier}: We've tried to deliver your parcel but there is an unpaid balance of {fee}. Visit {url}",
    "Your package {ref} is ready but your postcode is missing. Submit it here {url} - {carrier} Team",
    "{carrier}: your parcel is awaiting your instructions. Go to {url} and pay {fee} to release it today",
    "Hi! {carrier} here. Your parcel arrived at our local hub, we need a small payment ({fee}) for redelivery: {url}",
]

NEW_NUMBER_SCAM = [
    "Hi {mum}, this is my new number, I dropped my phone in the {water} and it's broken. Can you message me on "
    "WhatsApp on this number? x",
    "Hello {mum} it's me {name}, my phone broke so this is my new number. Can you do me a favour? I need to pay a "
    "bill today and my banking app won't work on this phone x",
    "Hi {dad}, it's {name}, new number, old phone smashed. Are you free? Need to ask you something urgent",
    "{Mum} it's {name}, lost my phone so using this one. I've got a bill of {amount} to pay today and I'm locked out "
    "of my bank, could you pay it and I'll pay you back tomorrow?",
    "Hey {mum}, new number! Save this one. Can you text me back on WhatsApp, need help with something x",
    "Hi {mum} can you send me {amount} to my mate's account, my card's been blocked on my new phone. I'll send you "
    "the details. Love you x",
    "Hello {mum}, my phone went in the {water} so this is my temp number. Are you busy? I need a quick favour",
    "Hi {mum} are you there? It's {name}. I've got a new phone and number. Can you help me pay something, it's due "
    "today and my online banking is locked for 24 hours",
    "{Dad} it's me, my phone's broken, this is my new number. Can you transfer {amount} for my rent, it's overdue "
    "and I can't log into my bank x",
    "Hi {mum}, it's me. Delete my old number, this is my new one. Can you message me on WhatsApp {phone} when you "
    "get a sec",
    "Hiya {mum}, got a new number, my phone got stolen on the {transport}. Can you lend me {amount} till Friday? "
    "It's urgent x",
    "{Mum}, I'm in a bit of trouble. New phone and my bank app needs 24hrs to activate. Could you pay this invoice "
    "for me, {amount}? Send you the details now",
    "Hello {dad}, this is my new number, can you save it. Also I need to ask you a favour, can you ring me back on "
    "WhatsApp?",
    "Hi {mum} it's {name}, screen smashed so using my friend's phone. Can you send {amount} to the account below, "
    "I'll explain later x",
    "Hi {mum}, my phone died so I'm on my new number. I need to make a payment today but it won't let me on the new "
    "phone. Can you help? x",
    "{Mum} are you free to talk on WhatsApp? It's {name}, this is my new number, old one is not working",
    "Hey it's {name}, new number. Can't talk on calls, the mic is broken. Could you pay {amount} to my landlord for "
    "me, I'll transfer it back on Monday",
    "Hi {mum}, I'm on a new number. I need {amount} for a phone bill that's due today otherwise they'll cut me off. "
    "Can you send it to this account? Sort code {sort} Account {account}",
    "Hi {dad}, save my new number. Are you home? I need help with an urgent payment, I'll explain x",
    "{Mum} I've been locked out of my account, I'm using a new sim. Can you buy me a {gift} gift card for {amount} "
    "and send me the code? x",
    "Hello {mum}, it's me {name}. My phone is broken so this is my new number. Please text me back when you see "
    "this, it's important",
    "Hi {mum}, new number, don't ring the old one. Could you transfer {amount} to my friend {friend}, I owe her and "
    "my card doesn't work yet x",
    "Hiya {dad}, it's {name}, I've had to get a new phone. Can you pay a bill for me? {amount}, it has to be today. "
    "Will pay back when my bank is sorted",
    "{Mum} it's {name}, phone's in for repair so I'm on this number. Any chance you could help me out with "
    "{amount}? Really stuck x",
    "Hi {mum}, using a new number. My bank froze my card. Can you send {amount} to {friend}'s account for me? I'll "
    "send details x",
    "Hello {mum}, it's your {child}, new number. Can you WhatsApp me, I need a favour and it's quite urgent",
    "Hey {mum}, my phone broke last night. This is my new number. Can you send me {amount}, I need to pay for a new "
    "phone today x",
    "Hi {dad} it's me, lost my phone at the {place}. This is my new number, please save it. Can you help me with a "
    "payment?",
    "{Mum}, new number! Old phone got water damage. Quick question, can you pay {amount} for me online? I'll explain "
    "everything later",
    "Hi {mum}, are you busy? It's {name} on a new number. I need {amount} urgently for my car insurance, my bank app "
    "is blocked x",
]

DELIVERY_HAM = [
    "The {shop} parcel came for you today, I've left it in your room",
    "Did your {shop} parcel turn up? Mine says delivered but I can't find it",
    "Your {carrier} parcel from {shop} is due today between {t1} and {t2}. You don't need to be in, it can go to "
    "your safe place.",
    "I missed the {carrier} man again, have to pick it up from the post office tomorrow",
    "Can you grab my parcel from number {num} when you get in? They took it in for me",
    "Just posted your birthday present, should get there by {day} hopefully",
    "The {carrier} guy left it behind the bin lol",
    "Have you ordered something from {shop}? There's a box here with your name on it",
    "{Mum} said your parcel got delivered to number {num} by mistake",
    "{carrier} says it'll be here tomorrow now, sorry! I'll bring it round on {day}",
    "I'll be in all day if you want to send the {shop} stuff here instead",
    "{shop} tracking says out for delivery, fingers crossed it comes before I leave",
    "Got the parcel thanks {name}! The kids love it x",
    "Can you check if there's a card through the door from {carrier}? I'm expecting a delivery",
    "The post office shuts at 5:30 so I'll get your parcel {day}",
    "Sorry, the {shop} order is delayed, they said {day} now",
    "Your {shop} parcel is in the porch, didn't want to leave it outside in the rain",
    "I've sent the return back with {carrier}, should be refunded in a few days",
    "Did you sign for something from {shop} today? I got an email saying delivered",
    "There's a {carrier} van outside, bet it's your shoes finally",
    "Just collected your parcel from the {carrier} locker, will drop it off later",
    "Your {shop} order {ref} has been dispatched and will arrive on {day}. Track it in the {shop} app.",
    "Think the {carrier} courier left your parcel at the shop on the corner, they texted me a photo",
    "The {shop} parcel arrived but the box was soaked, stuff inside is fine though",
    "Can you bring the parcel with you when you come on {day}?",
    "Yeah the {shop} box got delivered this morning, it's on the kitchen table",
    "I had to pay {fee} postage on that, you owe me haha",
    "Don't worry about the parcel, I'll sort it out with {carrier} myself",
    "The {shop} delivery was two hours late but it's here now",
    "I'm out so I asked {carrier} to leave it with {friend} at number {num}",
]

FAMILY_HAM = [
    "Hi {mum}, on the train now, home by {time} x",
    "{Mum} this is my new number, old phone finally died. Save it! See you {day} x",
    "Hi {dad}, can you pick me up from the {place} at {time}?",
    "Hi {mum}, it's {name}, got a new phone on contract so new number. Nothing else changed x",
    "{Mum} can you ring me when you're free, just want a chat about {day}",
    "{Dad} I've left my charger at yours, can you bring it on {day}?",
    "Hiya {mum}, did you get home ok? x",
    "It's {name}, new number, work gave me a phone. Use this one on work days x",
    "{Mum} what time is dinner on {day}? Shall I bring anything?",
    "Hi {dad}, passed my driving test!! Will ring you later x",
    "Thanks for the money for my birthday {mum}, bought the boots I wanted x",
    "I'll pay you back the {amount} on {day} when I get paid, thanks for helping out x",
    "{Mum}, running late, can you put the oven on for me?",
    "{Dad} don't forget grandma's birthday is on {day}",
    "Hi {mum}, phone's on 2% so if I don't reply that's why. Home soon",
    "Morning {mum}, how's your knee today?",
    "{Mum} I've changed my number, this is the new one. Can you give it to Nan please x",
    "Hey {dad}, the car's making that noise again, can you have a look at the weekend?",
    "Hi {mum}, landed safe, text you when we get to the hotel x",
    "Can you send me the photos from {day}? The ones in the garden",
    "{Mum} is it ok if {friend} stays over on {day}?",
    "{Dad}, what's the wifi password again? It's changed",
    "Hi {mum}, just checking you got my text about {day}. Love you x",
    "Got the job!!! Starting on {day}, will tell you all about it later {mum}",
    "{Mum}, did you transfer the money for the holiday deposit yet? The deadline is {day}",
    "Hi {dad}, new number, my old sim stopped working. Speak later x",
    "{Mum} can you record the match for me, I'm stuck at work",
    "Tell {dad} I said thanks for fixing my bike",
    "Hi {mum}, I'm at {friend}'s, will be back after tea",
    "It's {name}! Borrowed {friend}'s phone, mine's dead. Be home at {time}",
]

KINDS = {  # kind -> (label, templates)
    "parcel_scam": ("spam", PARCEL_SCAM),
    "new_number_scam": ("spam", NEW_NUMBER_SCAM),
    "delivery_ham": ("ham", DELIVERY_HAM),
    "family_ham": ("ham", FAMILY_HAM),
}

CARRIERS = ["Royal Mail", "Evri", "DPD", "Yodel", "Parcelforce", "DHL", "UPS", "Hermes", "InPost"]
SHOPS = ["ASOS", "Amazon", "Argos", "Next", "eBay", "Boots", "Very", "Zara", "Currys"]
NAMES = ["Ellie", "Jack", "Sophie", "Tom", "Mia", "Josh", "Chloe", "Liam", "Amy", "Ben", "Hannah", "Ryan"]
FRIENDS = ["Jess", "Kate", "Sam", "Becky", "Laura", "Dan", "Priya", "Megan"]


def _url(rng: random.Random, carrier: str) -> str:
    slug = carrier.lower().replace(" ", "")
    word = rng.choice(["redelivery", "reschedule", "parcel-help", "track-uk", "delivery-fee", "customs-pay",
                       "missed-parcel", "uk-support", "postage"])
    tld = rng.choice(["com", "info", "net", "co", "help", "top", "online", "uk.com", "support"])
    code = "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(4, 7)))
    host = rng.choice([f"{slug}-{word}.{tld}", f"{word}-{slug}.{tld}", f"{slug}.{word}.{tld}"])
    return rng.choice([f"https://{host}/{code}", f"{host}/{code}", f"http://{host}", f"https://bit.ly/{code}"])


def _slots(rng: random.Random) -> dict[str, str]:
    carrier = rng.choice(CARRIERS)
    mum = rng.choice(["mum", "mum", "mam", "mummy", "mom"])
    dad = rng.choice(["dad", "dad", "daddy"])
    return {
        "carrier": carrier, "shop": rng.choice(SHOPS), "url": _url(rng, carrier),
        "fee": f"£{rng.choice([0, 1, 1, 2, 2, 3])}.{rng.choice(['19', '45', '49', '89', '95', '99'])}",
        "ref": rng.choice(["RM", "EV", "DP", "YD", "PF", ""]) + "".join(rng.choices(string.digits, k=8))
        + rng.choice(["GB", "UK", ""]),
        "mum": mum, "Mum": mum.capitalize(), "dad": dad, "Dad": dad.capitalize(),
        "name": rng.choice(NAMES), "friend": rng.choice(FRIENDS), "child": rng.choice(["daughter", "son"]),
        "amount": f"£{rng.choice([240, 350, 480, 560, 725, 899, 1150, 1400, 1850, 1975])}",
        "water": rng.choice(["bath", "toilet", "sink", "pool"]),
        "place": rng.choice(["station", "gym", "pub", "festival", "airport", "shopping centre"]),
        "transport": rng.choice(["bus", "train", "tube", "tram"]),
        "gift": rng.choice(["Amazon", "Apple", "Google Play", "Steam"]),
        "sort": "-".join(f"{rng.randint(10, 99)}" for _ in range(3)),
        "account": "".join(rng.choices(string.digits, k=8)),
        "phone": f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
        "day": rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "tomorrow",
                           "the weekend"]),
        "time": rng.choice(["7", "half 6", "6:30", "8ish", "10", "quarter past 5"]),
        "t1": rng.choice(["09:12", "10:15", "11:40", "13:05", "14:30"]),
        "t2": rng.choice(["10:12", "11:15", "12:40", "14:05", "15:30"]),
        "num": str(rng.randint(2, 88)),
    }


def generate(seed: int = 2026) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows, seen = [], set()
    for kind, (label, templates) in KINDS.items():
        for i, template in enumerate(templates):
            for _ in range(VARIANTS * 5):  # distinct fillings; some templates have few slots
                text = template.format(**_slots(rng))
                if text not in seen:
                    seen.add(text)
                    rows.append({"label": label, "kind": kind, "family": f"{kind}-{i:02d}", "text": text})
                if sum(r["family"] == f"{kind}-{i:02d}" for r in rows) == VARIANTS:
                    break
    return rows


def main() -> None:
    rows = generate()
    with open(OUT, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["label", "kind", "family", "text"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} messages -> {OUT}")


if __name__ == "__main__":
    main()
