"""Writes modern_sms.csv: an evaluation-only set of SMS in the styles of the 2020s, to see whether a model trained on
the 2011-2012 SMS Spam Collection generalizes. Never used for training or picking anything.

Written by hand for this purpose (2026-11, spamtune's developers), one message per line below, no templates: spam
in the patterns consumer-protection agencies warn about (parcel-delivery fees, bank and account smishing, "hi mum,
new number", crypto and investment, loans, road tolls / fines / tax refunds, task and job scams, wrong-number
openers, prize and survey lures, subscription renewals) and ham that a filter must not block in their place:
real delivery notices, real bank alerts and one-time codes, appointment reminders, family and friends (including
genuine new numbers and money between people), work, school and council notices. Links and numbers are invented.

Labelling rule: spam is an unsolicited message that tries to get money, credentials or a reply from a stranger;
a notice a customer expects (a code they asked for, a parcel they ordered, a card payment they made) is ham even
when it has a link. Marketing people opted in to is left out: its label depends on consent the text cannot show.

    python -m benchmarks.data.modern_sms     # rewrites benchmarks/data/modern_sms.csv
"""

from __future__ import annotations

import csv
from pathlib import Path

OUT = Path(__file__).with_name("modern_sms.csv")

SPAM = {
    "parcel": [
        "Royal Mail: Your parcel has a £1.45 unpaid shipping fee. Pay now or it will be returned: "
        "royalmail-fee.info/gb",
        "USPS: The package arrived at the warehouse but could not be delivered due to incomplete address. Update "
        "here: usps-redelivery.top/us",
        "Evri: we tried to deliver your parcel today. To rebook a slot please confirm your details at evri-rebook.com",
        "DPD: your item is being held. A customs charge of £2.99 is due before we can release it: dpd-customs.net",
        "Your Amazon package is delayed due to an address error. Confirm your address within 12h: amzn-track.co",
        "FedEx: Parcel 4928 3381 0041 awaits your delivery preferences. Set them here: fedx-prefs.online/4928",
        "Hermes: Sorry we missed you. Small redelivery fee (£0.99) required. Pay: hermes-redeliver.uk",
        "Parcelforce: ATTEMPTED DELIVERY FAILED. Item returned to depot. Book again for £1.20 at pforce-depot.com",
        "UPS: Your shipment is on hold for unpaid duties of $1.95. Pay to avoid return: ups-duties-pay.com",
        "Your parcel from AliExpress could not be delivered. Reply Y to receive the link, then open it to reschedule.",
        "InPost: your locker code expired. Get a new code by verifying your card: inpost-locker.help",
        "DHL Express: final notice, your package will be destroyed in 48h unless the £3 storage fee is paid: "
        "dhl-storage.click",
        "Yodel: we couldn't deliver to your address. Update your postcode and pay 50p to rebook yodel-rebook.info",
        "Post Office: A parcel with your name is waiting. Shipping underpaid by £1.10. postoffice-uk-pay.com/p",
        "Australia Post: your item is at our facility. Delivery suspended until fee paid: auspost-fees.net",
    ],
    "bank": [
        "NatWest: A new payee was added to your account. If this was NOT you, cancel here: natwest-secure-payee.com",
        "Barclays: we have blocked a payment of £489.00 to Apple. If you did not make this, visit "
        "barclays-verify.uk",
        "HSBC ALERT: unusual sign-in on your online banking from a new device. Secure your account: hsbc-login.help",
        "Chase: Your debit card has been temporarily locked. Call 1-833-555-0192 to unlock it.",
        "Lloyds: your account will be suspended today. Verify your identity now: lloyds-id-check.com",
        "Monzo: we noticed a suspicious transaction. Please confirm your details at monzo-review.app to keep your "
        "card active",
        "Santander: Payment of £1,250.00 to J SMITH is pending. Not you? Call our fraud team on 0203 555 0148",
        "Wells Fargo: your account has been restricted. Log in to lift restrictions: wf-restore.info",
        "Halifax: A direct debit to AMAZON PRIME was declined. Update your payment info: halifax-dd.com",
        "Your Revolut account is frozen due to failed KYC. Complete verification in 24h: revolut-kyc.support",
        "Bank of America: Did you attempt a purchase of $899.99 at BestBuy? Reply YES or NO.",
        "Nationwide: your card has expired. Order a replacement card by confirming your details nw-cards.co.uk",
        "Starling: Security check required. Your app access is limited until you re-register: starling-reg.com",
        "TSB: we have refunded an overcharge of £63.40. Claim it before midnight: tsb-refunds.net",
        "Capital One: your credit limit increase is approved. Accept the offer: capone-limits.com/accept",
    ],
    "family": [
        "Hi mum this is my new number, my phone fell in the toilet. Can you save this one and text me back x",
        "Hey dad it's me, lost my phone so using this number for now. Can you do me a favour?",
        "Mum I've got a new number, the old one is broken. I need to pay a bill today and my banking app is locked, "
        "can you help",
        "Hi it's me. New phone. Can you send £380 to my friend's account, I'll pay you back tomorrow, it's urgent",
        "Hello mum, this is my temporary number. Are you busy? I need to ask you something",
        "Dad this is my new number please save it. Can you transfer 250 for my rent, my card isn't working",
        "Hi grandma it's Josh, new number. Please don't tell mum, I need some money quickly for something",
        "Mum? New number. Phone smashed. Can you whatsapp me on this one, need help with a payment",
        "hey its me, new number. u got a sec? need u to pay something for me online, will explain later",
        "Hi auntie this is Chloe's new number, could you help me with a payment today? i'll send the details",
        "Hello, it's your son. I'm texting from a friend's phone. I'm in trouble and need £600 please call me later",
        "Hi mum, I dropped my phone. This is my new number. Can you send me a picture of your bank card so I can "
        "add it",
    ],
    "crypto": [
        "Congrats! You've been selected to join our Bitcoin trading group. Members made 340% this month. "
        "Join: t.me/btc-profit-vip",
        "Your Coinbase wallet received 0.35 BTC. Confirm the transfer to release funds: coinbase-release.com",
        "Invest £250 today and earn £2,500 in 7 days with our AI crypto bot. Limited spaces: aicryptobot.io",
        "Binance: withdrawal of 1.2 ETH requested. If this wasn't you, cancel at binance-cancel.support",
        "Elon is giving back! Send 0.1 BTC and receive 0.2 BTC back. Only today: tesla-btc-event.com",
        "Hi, I'm Anna, a crypto mentor. I can help you earn passive income from home. Interested? Reply YES",
        "Your crypto account has an unclaimed balance of $4,380. Claim before it expires: cryptoclaim.app",
        "Ledger: your wallet must be synchronized to continue. Enter your recovery phrase at ledger-sync.app",
        "Exclusive pre-sale: new token listed next week, 50x expected. Buy now at moonpad-presale.io",
        "MetaMask: your wallet will be locked due to a security update. Verify now: metamask-verify.net",
        "Earn 2% daily guaranteed on USDT staking. No risk, withdraw any time. Register: usdt-stake.vip",
        "You have been refunded 0.04 BTC from a failed transaction. Claim within 24h: btc-refunds.org",
    ],
    "loan": [
        "You're pre-approved for a £5,000 loan with no credit check! Money in your account today. Apply: "
        "quickcash-uk.com",
        "Struggling with debt? New government scheme writes off up to 85% of unsecured debt. Reply INFO to check.",
        "Need cash fast? Borrow $500-$3000 even with bad credit. Reply YES for an instant decision.",
        "Final reminder: your application for a £10,000 personal loan is approved. Pay the £49 fee to release it",
        "Payday loan approved £750. Accept now before the offer ends: payday-now.co",
        "Claim up to £3,000 back on mis-sold car finance. No win no fee. Reply CLAIM",
        "Your credit score can go up 100 points in 30 days. Text SCORE to start",
        "LOW RATE 2.9% APR loans for homeowners. Call 0800 555 0176 today, lines open till 8pm",
        "Student debt relief: you qualify for forgiveness. Submit your info before Friday at debtrelief-gov.us",
        "Cash advance up to $1,500 approved, no documents needed. Get it: fastfund-advance.com",
    ],
    "government": [
        "HMRC: You are due a tax refund of £326.18. Claim it online before the deadline: hmrc-refund-claim.com",
        "DVLA: your vehicle tax payment failed. Update your details to avoid a fine: dvla-renew.info",
        "E-ZPass: you have an unpaid toll balance of $6.99. Pay now to avoid a $50 late fee: ezpass-tolls.com",
        "GOV.UK: You have an outstanding Dart Charge. Pay £8.50 today to avoid a penalty: dartcharge-pay.uk",
        "FINAL NOTICE: unpaid parking penalty PCN 4491. Pay within 24h or enforcement begins: pcn-pay.co.uk",
        "IRS: your stimulus payment is pending. Verify your identity to receive it: irs-payment.info",
        "TV Licensing: your licence has expired and your direct debit failed. Renew: tvlicence-renewal.com",
        "Department for Energy: you are eligible for a £400 energy rebate. Apply: energy-rebate-gov.uk",
        "NHS: you have been in close contact with a case of a new variant. Order a test kit: nhs-kits.com",
        "FasTrak: toll violation notice. Pay the balance of $4.15 within 3 days: fastrak-billing.com",
        "Council Tax reduction: you are owed £150. Claim now with your bank details at ctax-rebate.uk",
        "Ministry of Justice: a court summons has been issued in your name. View documents: moj-summons.com",
    ],
    "job": [
        "Hi! We are recruiting remote part-time staff, 1-2 hours a day, earn £300-£800 a day. Contact us on "
        "WhatsApp +44 7700 900418",
        "Hello, I'm Sarah from a recruitment agency. Your CV was recommended. Flexible online job, daily pay. "
        "Interested?",
        "Earn $50 per task rating hotels online from your phone. No experience needed. Reply to start",
        "We saw your profile on Indeed. Simple product review tasks, £200 a day. Add me on Telegram @hr_jessica",
        "Part-time job: like YouTube videos and get paid £5 per like. Message us to begin",
        "Amazon HR: you have been shortlisted for a home-based position. Salary £2,800/month. Reply YES",
        "Secret shopper needed in your area. You keep the goods and earn £250 per assignment. Apply now",
        "Mystery job offer: process payments for our company from home and keep 10%. Reply for details",
        "Looking for a side income? Our members earn £1,000 a week from their phones. Text WORK",
        "Dear candidate, congratulations on passing our interview. To start, pay the £75 training fee",
    ],
    "wrong_number": [
        "Hi, is this David? We met at the conference last week and you gave me your number.",
        "Hello, are you still coming to the golf club on Saturday? Mr Lee told me to message you",
        "Sorry, I think I saved the wrong number. I'm Lisa, nice to meet you anyway :)",
        "Hi Emma, the dog grooming appointment is confirmed for tomorrow. Oh sorry, is this not Emma?",
        "Hey long time no see! How have you been? I found your number while cleaning my contacts",
        "Hello, this is Mia. Are you the person who rented the apartment? Please reply",
        "Are you free for dinner tonight? Oh wait, who is this? I might have the wrong number haha",
        "Good morning! Did you receive the wine I sent you? Let me know, Jenny",
    ],
    "account": [
        "Apple: your Apple ID has been locked for security reasons. Unlock it at appleid-unlock-support.com",
        "Netflix: we couldn't process your last payment. Update your billing to keep watching: netflix-billing.co",
        "Amazon: a purchase of iPhone 15 Pro for £1,099 was made on your account. Not you? Call 0800 555 0113",
        "Microsoft: your Office 365 subscription expired. Renew now to keep your files: ms-renew365.com",
        "WhatsApp: your account will be deleted in 24h. Verify by sending the 6-digit code we just sent you",
        "PayPal: your account is limited until you confirm your information: paypal-resolution-centre.com",
        "Google: someone has your password. Change it immediately at google-security-alert.net",
        "Your iCloud storage is full and your photos will be deleted. Upgrade for free: icloud-storage.help",
        "Instagram: your account was reported for copyright violation. Appeal here or it will be removed: "
        "ig-appeal.com",
        "Facebook Security: your page will be disabled. Confirm ownership: meta-pages-support.com",
        "Disney+: your membership is on hold. Confirm your payment details: disneyplus-update.com",
        "Hi, I accidentally sent my verification code to your number. Could you forward it to me please?",
    ],
    "prize": [
        "Congratulations! You've won a Dyson Airwrap in our monthly draw. Claim by paying £2.95 postage: "
        "dyson-winners.com",
        "Tesco: you've been chosen for our customer survey. Complete it and get a £100 voucher: tesco-survey.uk",
        "You are the lucky winner of an iPhone 16! Confirm your address to receive it: iphone-draw.win",
        "Lidl is giving away £500 vouchers to celebrate its anniversary. Claim yours now: lidl-gift.club",
        "Your mobile number won £850,000 in the international lottery. Reply with your name and address",
        "Costco members: claim your free air fryer, just pay shipping. Offer ends today: costco-rewards.shop",
        "Thank you for being a loyal EE customer. You've earned 12,000 reward points. Redeem: ee-points.com",
        "Walmart: You've been selected for a $1000 gift card. Claim it here: wm-giftcard.net",
        "We tried to contact you about your prize. This is our last attempt. Call 0906 555 0199 now",
        "Your number was selected for a free Samsung Galaxy. Reply WIN to claim",
    ],
    "subscription": [
        "Your Norton antivirus subscription renewed for £299.99. To cancel and get a refund call 0808 555 0160",
        "McAfee: auto-renewal of $349.99 processed today. Call 1-844-555-0133 to dispute the charge",
        "Your Geek Squad membership has been renewed for £249. If you did not authorise this, reply STOP "
        "for a refund",
        "British Gas: you have overpaid your energy bill by £238. Claim your refund: bgas-refund.com",
        "Octopus Energy: your smart meter rebate of £95 is ready. Provide bank details at octo-rebate.net",
        "Spotify Premium: payment failed. Your account will be downgraded. Update: spotify-billing.info",
        "Your domain will expire today. Renew immediately to avoid losing it: domain-renewals.net",
        "Vodafone: your bill could not be paid. Avoid disconnection by updating your payment: vf-billing.co.uk",
    ],
}

HAM = {
    "codes": [
        "Your Monzo verification code is 482913. Never share it with anyone, not even Monzo staff.",
        "G-592841 is your Google verification code.",
        "Your Uber code: 7731. Reply STOP ALL to +44 7700 900111 to unsubscribe.",
        "Use 605118 to verify your WhatsApp account. Don't share this code with others.",
        "Your Amazon OTP is 338201. Do not share it with anyone. If you didn't request this, ignore this message.",
        "NatWest: 814 220 is your one-time passcode to approve the payment of £42.15 to ASOS. Don't share it.",
        "Your Microsoft account security code is 9942.",
        "Steam Guard code: K7X2Q. It expires in 10 minutes.",
        "Your Deliveroo login code is 5519.",
        "Apple ID code: 773 104. Don't share it with anyone.",
        "Revolut: 284-117 is your code to log in on a new device. If this wasn't you, freeze your card in the app.",
        "Your NHS login security code is 430286",
    ],
    "delivery": [
        "Royal Mail: your parcel from Next will be delivered today. We'll text again when it's on the way.",
        "DPD: Hi Sarah, your parcel from John Lewis will be delivered today between 10:14 and 11:14 by Marek.",
        "Your Amazon package with 2 items was delivered and handed to a resident.",
        "Evri: your parcel from Vinted was dropped at the ParcelShop on High Street. Collect by 28 Nov with "
        "code 4471.",
        "Tesco: your grocery delivery is on its way, arriving between 6pm and 7pm. Driver: Paul.",
        "Your Argos order is ready to collect from the Sainsbury's on Station Road. Bring your order number.",
        "UPS: your package 1Z 8W4 will arrive on Thursday. You can change the delivery in the UPS app.",
        "Yodel: we left your parcel in your safe place (behind the side gate) as requested.",
        "Hi it's the courier, I'm outside with your parcel but nobody is answering. Shall I leave it next door?",
        "Your IKEA delivery is scheduled for Saturday 8am-12pm. Reply 1 to confirm or call us to rearrange.",
        "InPost: your parcel is in locker WAT21M at the Co-op. Open it in the app or with code 883201.",
        "Sainsbury's: Your order is on its way. Your driver Jo will arrive between 19:00 and 20:00",
    ],
    "bank": [
        "Barclays: Your card ending 4821 was used for £23.50 at TESCO STORES. If this wasn't you, call the number "
        "on the back of your card.",
        "Your salary of £2,145.60 has been paid into your account.",
        "Nationwide: your new debit card is on its way and should arrive within 5 working days.",
        "Monzo: you've spent 80% of your Eating Out budget this month.",
        "Your direct debit of £34.00 to Thames Water will be taken on 1 December.",
        "Halifax: your balance is £312.44 at 8am on 24 Nov.",
        "Lloyds: you've sent £50.00 to Tom Baker.",
        "Chase: a payment of $14.99 to Netflix was made from your card ending 0093.",
    ],
    "appointments": [
        "Reminder: your appointment with Dr Patel is on Tue 2 Dec at 09:40 at Riverside Surgery. Reply CANCEL if "
        "you can't attend.",
        "Smile Dental: hi Ruth, see you Thursday at 3:15pm for your check-up. Call 01632 960442 to change it.",
        "Your flu vaccination is booked for Saturday 10:20 at Boots, Market Street.",
        "Hair by Leah: just a reminder of your cut and colour tomorrow at 11. See you then!",
        "Specsavers: your eye test is tomorrow at 14:30. Please bring your current glasses.",
        "Kwik Fit: your car is booked in for an MOT on Monday at 8:30am.",
        "Vets4Pets: Bella is due her booster vaccination. Book online or call us.",
        "Your table for 4 at Dishoom is confirmed for Friday at 7:30pm.",
        "Physio reminder: Wednesday 5pm with Anna. Wear something comfortable.",
        "Your prescription is ready to collect from Lloydspharmacy.",
    ],
    "family": [
        "Hi mum, just landed, going to get the train now. Will call you later x",
        "Dad can you pick me up from football at 6? Practice finishes early",
        "It's Sam, got a new number, old phone finally died. Save this one! See you Sunday",
        "Mum it's Katie, new number as I switched to giffgaff. Same old me though haha",
        "Did you remember to take the chicken out of the freezer?",
        "Grandma says thank you for the flowers, she loved them",
        "Running late, start dinner without me. Love you",
        "Can you send me Auntie Jo's address? Want to post her birthday card",
        "Happy birthday son! Hope you have a lovely day, we'll see you at the weekend",
        "Kids are in bed. Want to watch the next episode tonight?",
        "Mum I've transferred the £40 for the phone bill, thanks for covering it",
        "Dad, the boiler's making that noise again. Can you have a look when you're over?",
        "Have you booked the ferry for Easter yet? Prices are going up",
        "Just checking you got home OK in the snow",
        "Can you grab milk and bread on your way back please",
        "I've put £20 in your account for the school trip, don't spend it on sweets!",
        "The cat has been sick on the carpet again",
        "We're at the hospital with Grandad, he's fine, just a check-up. Will update you",
    ],
    "friends": [
        "Are we still on for pizza on Friday? I can book for 8",
        "That film was so bad haha. Drinks next week?",
        "Can you send me the £12 for the cinema tickets when you get a sec? No rush",
        "I'm outside your flat, come down!",
        "Happy birthday!! Hope you have an amazing day, let's celebrate this weekend",
        "Did you see the match last night? Unbelievable finish",
        "Just sent you the photos from the wedding, some good ones of you",
        "Train is delayed 20 mins, sorry! Order me a drink",
        "Do you still have my charger? Need it back before my trip",
        "Thanks for tonight, had a great time. Let me know you got home",
        "Hey, congrats on the new job! Well deserved",
        "Who's driving to the festival? I can fit 3 in my car",
        "Sorry I missed your call, at the gym. Call you in 10?",
        "Can you feed the cat on Thursday? Key is under the plant pot",
        "I've set up the group chat for Jen's leaving do, adding you now",
        "Lol no way. Tell me everything tomorrow",
        "Booked the cottage for May, it's £85 each, I'll send the bank details",
        "Free to chat later? Need some advice about the flat",
        "Can't believe it's snowing already",
        "Landed safely, the hotel is lovely. Miss you guys",
    ],
    "work": [
        "Meeting moved to 3pm, same room",
        "Can you send me the slides before the client call tomorrow?",
        "I'm off sick today, have let Mark know. Back tomorrow hopefully",
        "The server's down again, IT are on it",
        "Your shift on Saturday has been changed to 9-5. Reply to confirm.",
        "Thanks for covering for me yesterday, I owe you one",
        "Client signed! Drinks on me on Friday",
        "Reminder: timesheets due by 5pm today",
        "Parking at the office is closed tomorrow for resurfacing",
        "Can you call me when you're out of the meeting? Quick question about the invoice",
        "Your interview is confirmed for Monday 10am at our Leeds office. Ask for Priya at reception.",
        "The delivery for site 2 is delayed until Thursday",
    ],
    "notices": [
        "St Mary's Primary: school will close at 1pm on Friday for staff training. Please collect children on time.",
        "Oakfield Council: your bin collection is moved to Saturday this week due to the bank holiday.",
        "Thames Water: we're fixing a burst pipe on your street. Your water may be off until 4pm. Sorry for the "
        "disruption.",
        "Your library books are due back on 30 Nov. Renew online or in any branch.",
        "Greenway Leisure: the pool is closed tomorrow for maintenance. The gym is open as normal.",
        "Northern Rail: the 07:42 to Leeds is cancelled. The next service is the 08:02.",
        "UK Power Networks: power has been restored in your area. Thank you for your patience.",
        "Your gas meter reading is due. Submit it in your online account or app.",
        "Scout group: reminder that camp forms and £15 are due back by Friday",
        "Election reminder: polling stations are open 7am to 10pm on Thursday. Bring photo ID.",
        "Your repeat prescription request has been approved by the surgery and sent to your pharmacy.",
        "Octopus Energy: thanks for your meter reading. Your next bill will be based on it.",
        "Your MOT is due on 14 January. Book with any approved garage.",
        "Hi, this is Green Cabs. Your taxi (silver Skoda, KX19 ABC) is outside.",
        "Your Ocado order has been amended: 2 items substituted. See the app for details.",
        "Trainline: your ticket for the 17:35 to Manchester is in the app. Platform to be confirmed.",
    ],
    "money": [
        "Sent you the £35 for the concert, let me know if it doesn't come through",
        "Hey, can I borrow £20 till Friday? Will pay you back when I get paid",
        "Just paid the deposit for the holiday, you owe me £120 when you can",
        "Split the bill from last night: £18.40 each. Details are in the group chat",
        "Mum, I paid you back the £50, check your account",
        "Rent's gone out today, I covered the bills too so you owe me £45.50",
        "Can you venmo me for the groceries? It was $32",
        "Thanks for lending me the money, it really helped. I'll transfer it on payday",
        "The plumber wants £90 cash, can you leave it on the side for him tomorrow?",
        "Did the £200 for the car repair arrive? The bank says it's sent",
    ],
    "plans": [
        "Park run tomorrow at 9? I'll meet you at the cafe",
        "Book club is at mine this month, bring snacks!",
        "Can we move our call to Thursday? Something came up at work",
        "I'm at the front of the queue, what do you want from the bakery?",
        "Football's cancelled tonight, pitch is waterlogged",
        "Let's get the early train, the later one is always packed",
    ],
}


def rows() -> list[tuple[str, str, str]]:
    """(label, category, text) for every message, spam first."""
    return [("spam", cat, t) for cat, texts in SPAM.items() for t in texts] + \
           [("ham", cat, t) for cat, texts in HAM.items() for t in texts]


def main() -> None:
    with open(OUT, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "category", "text"])
        w.writerows(rows())
    print(f"wrote {OUT} ({len(rows())} messages)")


if __name__ == "__main__":
    main()
