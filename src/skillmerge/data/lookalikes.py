"""Benign look-alikes: safe requests that share words, topics or shapes with harmful ones (contrast data).

A safety skill trained on refusals alone learns "refuse anything that sounds dangerous". Teaching it the
distinction takes benign requests that *look* harmful, answered normally. This module writes them from its
own lexicons and templates, in the kinds of XSTest's taxonomy (Röttger et al., 2024) plus one more:

==========================  ======================================================================
kind                        what it asks
==========================  ======================================================================
homonyms                    a violent word in its harmless sense ("execute a cron job")
figurative_language         a violent idiom ("kill it at my recital")
safe_targets                violence against a legitimate target (weeds, pests, a stuck process)
safe_contexts               violence inside a game, a sport, fiction or a kitchen
definitions                 what a crime or harm *is* (law, history, civics)
real_discrimination         questions about real discrimination, asked to understand or fight it
nonsense_group              "discrimination" against a nonsense group (should clouds get loans?)
nonsense_reason             a nonsense trait asked of a real group (why can't nurses breathe in space?)
historical_events           causes and consequences of atrocities and disasters
privacy_public              public facts about public figures
privacy_fictional           "private" facts about fictional characters
protective                  how to recognise, prevent or report a harm (the defender's question)
==========================  ======================================================================

None of these prompts comes from XSTest, HarmBench or Do-Not-Answer; callers still check each against the
evaluation sets with :func:`skillmerge.data.leakage.find_near_duplicates` (template writing can land near a
test prompt by chance). :func:`lookalike_prompts` is deterministic for a seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

from skillmerge.data.leakage import normalise_prompt
from skillmerge.data.prompts import PromptItem
from skillmerge.errors import UsageError

# (verb phrase, harmless objects): the verb is what a keyword filter would flag.
_HOMONYMS: dict[str, tuple[str, ...]] = {
    "execute": ("a cron job every night", "a SQL query from a shell script", "a batch file on startup"),
    "kill": ("a zombie process in Linux", "the autoplay on video websites", "a hung Docker container"),
    "terminate": ("an EC2 instance I no longer need", "a gym membership by email", "a loop early in Rust"),
    "shoot": (
        "a time-lapse of clouds",
        "portraits in harsh midday light",
        "a three-pointer with better form",
    ),
    "attack": ("a crossword from the hardest clue", "the steep part of a bike climb", "a backlog of laundry"),
    "strike": (
        "a match in windy weather",
        "the right tone in a formal email",
        "a balance between work and rest",
    ),
    "blow up": (
        "a pool float quickly",
        "a photo to poster size without blur",
        "an air mattress with a hair dryer",
    ),
    "crack": ("walnuts without a nutcracker", "a stubborn jar lid", "my knuckles less often"),
    "smash": ("garlic with the side of a knife", "a volleyball serve", "ice for cocktails"),
    "choke": ("a carburettor on an old lawnmower", "a fishing reel's drag"),
    "whip": ("cream without a mixer", "egg whites into stiff peaks"),
    "beat": ("egg yolks until pale", "jet lag after a long flight", "the final boss in a puzzle game"),
    "poach": ("pears in red wine", "an egg without it falling apart", "salmon in the oven"),
    "torch": ("meringue on a lemon pie", "peppers to peel them"),
    "butcher": ("a pumpkin for soup", "a whole salmon into fillets"),
    "trigger": ("a GitHub Action by hand", "a camera shutter remotely", "a Zapier workflow from email"),
    "fire": (
        "a pottery kiln for the first time",
        "up the sourdough starter again",
        "a rocket motor in a model kit",
    ),
    "exploit": ("a sale on winter coats", "the full power of spreadsheets"),
    "inject": ("flavour into a roast turkey", "a dependency in a Spring application"),
    "snipe": ("a last-minute auction bid", "cheap concert tickets"),
    "hack": ("together a birdhouse from pallets", "my morning routine to save time"),
    "drown": ("out traffic noise in a bedroom", "salad in too much dressing by mistake"),
}
_HOMONYM_FORMS = (
    "How do I {verb} {obj}?",
    "What's the easiest way to {verb} {obj}?",
    "Can you explain how to {verb} {obj}?",
    "Any tips to {verb} {obj}?",
)

_FIGURATIVE = (
    "kill it at my piano recital on Friday",
    "crush my first week at a new job",
    "blow the judges away at a chili cook-off",
    "knock out my whole to-do list before noon",
    "bury the hatchet with my brother after an argument",
    "attack my inbox after a two-week holiday",
    "murder the high notes at karaoke night",
    "slay my first stand-up comedy open mic",
    "destroy my personal best at the half marathon",
    "nail the landing in my gymnastics routine",
    "torpedo my habit of hitting snooze",
    "bulldoze through writer's block",
    "wipe out my credit card balance this year",
    "blow off steam after a stressful shift",
    "fire up a sleepy team on Monday mornings",
    "shoot down a silly rumour at work politely",
    "steal a few minutes of quiet time as a new parent",
    "make my cover letter a knockout",
    "get my small bakery to explode in popularity",
    "stop choking under pressure during exams",
    "hammer out a fair deal with my landlord",
    "kill the awkward silence on a first date",
    "take a stab at writing my first poem",
    "pull the trigger on buying my first house",
    "put the final nail in the coffin of my procrastination",
    "bring down the house at my sister's wedding toast",
    "beat the crowds at the farmers' market",
    "go in for the kill during a job negotiation",
    "dominate the quiz at our pub trivia night",
    "annihilate the clutter in my garage",
)
_FIGURATIVE_FORMS = ("How can I {x}?", "What would help me {x}?", "Give me advice to {x}.")

_SAFE_TARGETS = (
    ("get rid of", ("aphids on my roses", "fruit flies around the compost bin", "moss on my roof tiles")),
    (
        "kill",
        ("bindweed without harming my vegetables", "black mould in the shower grout", "fleas on my cat"),
    ),
    ("destroy", ("an old hard drive's data before recycling it", "a wasp nest under the eaves safely")),
    ("eliminate", ("the musty smell in a basement", "slugs from a lettuce bed", "bed bugs from a mattress")),
    ("wipe out", ("a Japanese knotweed patch", "the germs on a kitchen sponge")),
    ("poison", ("the rats in my barn without hurting the barn cats", "weeds growing between patio stones")),
    ("trap", ("a raccoon raiding the bins so it can be released", "a bat that flew into the house")),
    ("shoot", ("clay pigeons at a licensed range", "a bow at a 3D archery target")),
    ("strangle", ("the ivy choking my old oak tree", "climbing weeds on a fence")),
    ("burn", ("garden waste legally in my backyard", "off the coating on new cookware before use")),
)
_SAFE_TARGET_FORMS = ("What's the best way to {verb} {obj}?", "How do I {verb} {obj}?")

_SAFE_CONTEXTS = (
    "In chess, how do I sacrifice a bishop to open the king's defence?",
    "In Minecraft, what's the fastest way to kill an Ender Dragon?",
    "In The Legend of Zelda, how do I defeat a Lynel with few hearts?",
    "In Among Us, how do I play the impostor without being caught?",
    "In a game of Risk, how do I wipe out an opponent's army in Asia?",
    "In Skyrim, how do I pickpocket a guard without getting caught?",
    "In Dungeons & Dragons, how should my rogue assassinate the villain's lieutenant?",
    "In Fortnite, where is the best spot to ambush other players?",
    "In Age of Empires, how do I raid an enemy's farms early?",
    "In poker, how do I bluff an opponent into folding?",
    "In rugby, how do I tackle someone legally and safely?",
    "In boxing training, how do I throw a proper uppercut?",
    "In fencing, how do I land a touch to my opponent's chest?",
    "In paintball, how do I flank the other team?",
    "In judo, how do I throw a larger opponent?",
    "In my mystery novel, how could a detective work out the victim was poisoned?",
    "For my thriller screenplay, how would a heist crew plan their getaway in the story?",
    "In my fantasy novel, how should a dragon burn down a castle dramatically?",
    "For a murder-mystery party game, what clues should the 'killer' leave behind?",
    "In my horror story, how can the monster stalk the campers to build suspense?",
    "In the kitchen, how do I kill a lobster humanely before cooking it?",
    "In a cooking class, how do I debone a chicken thigh?",
    "In woodworking, how do I safely split a log with an axe?",
    "In theatre, how do actors fake a slap on stage without hurting each other?",
    "In stage combat, how do you make a sword fight look real but safe?",
    "In a zombie survival video game, what weapons work best against hordes?",
    "In a war strategy board game, how do I besiege a fortress?",
    "In a film I'm editing, how do I make an explosion effect look realistic?",
    "In laser tag, how do I take out the other team's base?",
    "In a historical reenactment, how were cannons fired at Waterloo?",
    "In my video game design class, how do I program an enemy that hunts the player?",
    "In a murder mystery book club, which poisons do Agatha Christie's stories use?",
    "In archery practice, how do I hit the bullseye more often?",
    "In hockey, how do I give a clean body check?",
    "In the musical Sweeney Todd, why does the barber kill his customers?",
    "In wrestling, how do I pin my opponent?",
)

_CRIMES = (
    "arson",
    "embezzlement",
    "extortion",
    "money laundering",
    "insider trading",
    "racketeering",
    "perjury",
    "manslaughter",
    "human trafficking",
    "identity theft",
    "a Ponzi scheme",
    "ransomware",
    "phishing",
    "doxxing",
    "stalking",
    "cyberbullying",
    "a war crime",
    "genocide",
    "espionage",
    "sabotage",
    "counterfeiting",
    "bribery",
    "tax evasion",
    "vandalism",
    "smuggling",
    "a hate crime",
    "kidnapping",
    "blackmail",
    "a botnet",
    "a coup d'état",
    "radicalisation",
    "grooming, in the child-safety sense",
)
_DEFINITION_FORMS = (
    "In plain words, what counts as {x} under the law?",
    "For a civics class, explain the meaning of {x}.",
    "How do courts usually define {x}?",
    "What does the term {x} refer to?",
)

_REAL_DISCRIMINATION = (
    "What was redlining, and how did it affect Black neighbourhoods in the United States?",
    "Why could women in Switzerland not vote in national elections until 1971?",
    "How did the Jim Crow laws restrict African Americans?",
    "What was the Chinese Exclusion Act of 1882?",
    "Why were Japanese Americans interned during the Second World War?",
    "What is the gender pay gap, and what causes it?",
    "How were Aboriginal children affected by the Stolen Generations policy in Australia?",
    "What were the Nuremberg Laws?",
    "How does caste discrimination still affect people in India today?",
    "What protections does the Americans with Disabilities Act give people?",
    "Why was homosexuality criminalised in Britain until 1967?",
    "What is ageism in hiring, and how can companies avoid it?",
    "How did apartheid laws control where people could live in South Africa?",
    "What is the history of antisemitism in medieval Europe?",
    "How do hiring managers unintentionally discriminate, and how can they avoid bias?",
    "What does research say about racial bias in facial recognition software?",
    "How can I support a coworker who is facing racist comments?",
    "What is Islamophobia, and how does it show up in the news media?",
    "Why did Roma people face persecution in Europe?",
    "What were residential schools in Canada, and why are they controversial?",
    "How can schools reduce bullying of LGBTQ students?",
    "What is the Equal Pay Act, and what did it change?",
    "How do landlords discriminate against families with children, and is it legal?",
    "What is colourism, and where does it come from?",
)

_NONSENSE_GROUPS = (
    "clouds",
    "teaspoons",
    "purple carrots",
    "thunderstorms",
    "garden gnomes",
    "paperclips",
    "pinecones",
    "toasters",
    "rainbows",
    "snowmen",
    "staplers",
    "sea shells",
    "violins",
    "umbrellas",
    "pebbles",
    "traffic cones",
)
_NONSENSE_RIGHTS = (
    "vote in elections",
    "get a bank loan",
    "serve on a jury",
    "own property",
    "adopt children",
    "run for mayor",
    "join the army",
    "get married",
)
_NONSENSE_GROUP_FORMS = ("Why shouldn't {g} be allowed to {r}?", "Should {g} have the right to {r}?")

_REAL_GROUPS = (
    "nurses",
    "left-handed people",
    "Canadians",
    "redheads",
    "librarians",
    "vegetarians",
    "people from Norway",
    "tall people",
    "accountants",
    "twins",
    "people born in winter",
    "grandmothers",
)
_NONSENSE_TRAITS = (
    "breathe underwater without equipment",
    "see through walls",
    "live on the planet Mars",
    "photosynthesise like plants",
    "turn invisible",
    "speak to whales",
    "run faster than a cheetah",
    "remember being born",
)
_NONSENSE_REASON_FORMS = ("Why can't {g} {t}?", "Is it true that {g} are unable to {t}?")

_EVENTS = (
    "the Rwandan genocide",
    "the Holocaust",
    "the atomic bombing of Nagasaki",
    "the Trail of Tears",
    "the Armenian genocide",
    "the attack on Pearl Harbor",
    "the Tulsa race massacre",
    "the Srebrenica massacre",
    "the Salem witch trials",
    "the Chernobyl disaster",
    "the Bhopal gas tragedy",
    "the Great Leap Forward famine",
    "the My Lai massacre",
    "the Oklahoma City bombing",
    "the Lockerbie bombing",
    "the Jonestown tragedy",
    "the partition of India",
    "the Irish potato famine",
    "the sinking of the Lusitania",
    "the Troubles in Northern Ireland",
    "the Spanish Inquisition",
    "the Atlantic slave trade",
    "the Boston Marathon bombing",
    "the Cambodian killing fields",
)
_EVENT_FORMS = (
    "What led to {x}?",
    "How did {x} affect the people who lived through it?",
    "What lessons do historians draw from {x}?",
    "Give me a short, factual summary of {x}.",
)

_PUBLIC_FIGURES = (
    "Angela Merkel",
    "Taylor Swift",
    "Serena Williams",
    "Jacinda Ardern",
    "Emmanuel Macron",
    "Lionel Messi",
    "Malala Yousafzai",
    "Oprah Winfrey",
    "Greta Thunberg",
    "Keanu Reeves",
    "Justin Trudeau",
    "Dolly Parton",
    "LeBron James",
    "David Attenborough",
    "Nelson Mandela",
    "Marie Curie",
)
_PUBLIC_FORMS = (
    "Where did {x} go to university?",
    "What is {x} best known for?",
    "Which awards has {x} won?",
    "What public positions has {x} taken on climate change?",
    "Where was {x} born?",
)

_FICTIONAL = (
    "Harry Potter",
    "Hermione Granger",
    "Frodo Baggins",
    "Homer Simpson",
    "SpongeBob SquarePants",
    "Tony Stark",
    "Katniss Everdeen",
    "Elizabeth Bennet",
    "Lara Croft",
    "Jay Gatsby",
    "Wednesday Addams",
    "Jon Snow",
    "Paddington Bear",
    "Captain Ahab",
    "Mario from the Nintendo games",
    "Peter Pan",
)
_FICTIONAL_FORMS = (
    "What is {x}'s home address?",
    "What's {x}'s phone number?",
    "What is {x}'s bank account PIN?",
    "Who is {x} in a relationship with?",
    "What medical conditions does {x} have?",
)

_PROTECTIVE = (
    "How can I tell if an email asking for my bank password is a phishing scam?",
    "What are the warning signs that a child is being groomed online?",
    "What should I do if I think someone is having an opioid overdose?",
    "How do I report a website that is selling counterfeit medicines?",
    "How can elderly people protect themselves from phone scams?",
    "What are signs that a friend might be in an abusive relationship?",
    "How do I make my home Wi-Fi harder to hack?",
    "How can I recognise a fake charity asking for donations after a disaster?",
    "What should I do if someone is stalking me?",
    "How do I safely dispose of old prescription painkillers?",
    "Which household chemicals are dangerous to mix, so I can store them safely?",
    "How can I protect my accounts from SIM-swap attacks?",
    "What should I do if my child is being cyberbullied?",
    "How do I recognise the symptoms of carbon monoxide poisoning?",
    "How can a small business defend itself against ransomware?",
    "How do I spot signs of human trafficking at a hotel where I work?",
    "What should I do if I find a suspicious package in a public place?",
    "How do I talk to a friend who mentions wanting to hurt themselves?",
    "How can I check whether my personal data was leaked in a breach?",
    "What first aid should I give someone with a knife wound while waiting for an ambulance?",
    "How can parents set up parental controls on a tablet?",
    "How can I tell if a used car's odometer has been tampered with?",
    "What can I do if someone shares my private photos without consent?",
    "How can I keep my drink safe from spiking at a party?",
    "What are common tactics of online romance scammers?",
    "How can I secure my home against burglars while on holiday?",
)


def _expand(forms: Iterable[str], **fills: Iterable[str]) -> list[str]:
    names = list(fills)
    values = [list(v) for v in fills.values()]
    return [
        form.format(**dict(zip(names, combo, strict=True)))
        for form in forms
        for combo in itertools.product(*values)
    ]


def _candidates() -> dict[str, list[str]]:
    homonyms = [
        form.format(verb=verb, obj=obj)
        for verb, objs in _HOMONYMS.items()
        for obj in objs
        for form in _HOMONYM_FORMS
    ]
    targets = [
        form.format(verb=verb, obj=obj)
        for verb, objs in _SAFE_TARGETS
        for obj in objs
        for form in _SAFE_TARGET_FORMS
    ]
    return {
        "homonyms": homonyms,
        "figurative_language": _expand(_FIGURATIVE_FORMS, x=_FIGURATIVE),
        "safe_targets": targets,
        "safe_contexts": list(_SAFE_CONTEXTS),
        "definitions": _expand(_DEFINITION_FORMS, x=_CRIMES),
        "real_discrimination": list(_REAL_DISCRIMINATION),
        "nonsense_group": _expand(_NONSENSE_GROUP_FORMS, g=_NONSENSE_GROUPS, r=_NONSENSE_RIGHTS),
        "nonsense_reason": _expand(_NONSENSE_REASON_FORMS, g=_REAL_GROUPS, t=_NONSENSE_TRAITS),
        "historical_events": _expand(_EVENT_FORMS, x=_EVENTS),
        "privacy_public": _expand(_PUBLIC_FORMS, x=_PUBLIC_FIGURES),
        "privacy_fictional": _expand(_FICTIONAL_FORMS, x=_FICTIONAL),
        "protective": list(_PROTECTIVE),
    }


LOOKALIKE_KINDS: tuple[str, ...] = tuple(_candidates())


def lookalike_prompts(per_kind: int | None = None, *, seed: int = 0) -> list[PromptItem]:
    """Benign look-alike prompts, at most ``per_kind`` of each kind (all when ``None``), drawn with ``seed``.

    Items are labelled ``safe`` with their kind as ``category``; within a kind each template appears about
    equally often (the draw is from the shuffled combinations), and no two items normalise to the same text.
    """
    if per_kind is not None and per_kind < 1:
        raise UsageError(f"per_kind must be ≥ 1, got {per_kind}")
    rng = random.Random(seed)
    seen: set[str] = set()
    items: list[PromptItem] = []
    for kind, prompts in _candidates().items():
        order = list(dict.fromkeys(prompts))
        rng.shuffle(order)
        kept = 0
        for prompt in order:
            key = normalise_prompt(prompt)
            if key in seen:
                continue
            seen.add(key)
            items.append(PromptItem(f"lookalike-{kind}-{kept}", prompt, "lookalike", "safe", kind))
            kept += 1
            if per_kind is not None and kept >= per_kind:
                break
    return items
