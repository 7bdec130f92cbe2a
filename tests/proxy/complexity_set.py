"""A labelled set of prompts for the complexity scorer, kept apart from the examples it learns from
(tollgate/plugins/proxy/complexity_examples.json): tests/proxy/test_complexity.py holds the scorer to a floor on it
and bench/routing.py reports its accuracy and cost on it.

Tiers: ``simple`` is what any small model answers (a fact, a greeting, a word); ``standard`` is a normal piece of
work (an explanation, a short email, a small function); ``hard`` needs reasoning over several steps, constraints or
expertise (a design, a proof, a diagnosis, a long constrained text). A prompt is a string, or a conversation.
"""

from __future__ import annotations

from typing import Any

SIMPLE = [
    "What's the capital of Canada?",
    "Hello there!",
    "How many centimetres are in a metre?",
    "Translate 'cat' into German.",
    "Who discovered penicillin?",
    "What does 'ubiquitous' mean?",
    "Is Pluto still considered a planet?",
    "What's 12 times 12?",
    "Which animal is known as the king of the jungle?",
    "What does NASA stand for?",
    "Give me an antonym of 'generous'.",
    "What's the largest country by area?",
    "How do you spell 'rhythm'?",
    "Thank you so much!",
    "What is the main ingredient in guacamole?",
    "In which country is the Taj Mahal?",
    "How many players are on a soccer team?",
    "What's the chemical formula for water?",
    "Who was the first person to walk on the moon?",
    "What is the speed of light, roughly?",
    "Say 'good luck' in Italian.",
    "What month comes before June?",
    "Which gas do plants absorb from the air?",
    "What is the past tense of 'run'?",
    "Is a whale a mammal?",
    # harder to tell: long, or with words that usually mean more work
    "I was reading an article about the history of the printing press and it mentioned a lot of names and dates "
    "that I did not know, and I got curious. Who invented the printing press?",
    "My friend and I were arguing over dinner last night about geography and neither of us would back down. "
    "Which is bigger, Africa or Europe?",
    "Quick one: what's the keyboard shortcut to copy on a Mac?",
    "What does the acronym SQL stand for?",
    "What is 7 factorial?",
]

STANDARD = [
    "Explain how a credit score is calculated.",
    "Write a short email asking my landlord to fix a leaking kitchen tap.",
    "Summarize the causes of the First World War in a few sentences.",
    "Write a Python function that counts the vowels in a string.",
    "What are the advantages and disadvantages of working from home?",
    "Explain what an index is in a database and why it speeds up queries.",
    "Give me a recipe for a simple tomato pasta sauce.",
    "How does a solar panel turn sunlight into electricity?",
    "Write a short birthday message for my grandmother.",
    "Explain the difference between a stock and a bond.",
    "How do I create a virtual environment in Python and install packages into it?",
    "Describe the life cycle of a butterfly.",
    "Write a JavaScript function that removes duplicates from an array.",
    "What are some tips for learning a new language as an adult?",
    "Explain how HTTPS keeps a connection private.",
    "Rewrite this paragraph to sound more professional: 'hey guys, the report is kinda late cuz the data was messed up, will send it tmrw prob.'",
    "What is the difference between RAM and storage?",
    "Plan a simple 5-day workout routine for a beginner.",
    "Explain what the greenhouse effect is.",
    "Write a SQL query to find the second highest salary in an employees table.",
    "How do airplanes stay in the air?",
    "Give me a packing list for a week-long beach holiday.",
    "Explain object-oriented programming with an example.",
    [{"role": "user", "content": "I'm planning a trip to Lisbon."},
     {"role": "assistant", "content": "Lovely! How can I help?"},
     {"role": "user", "content": "What neighbourhoods should I stay in, and why?"}],
    "What is the difference between a Roth IRA and a traditional IRA?",
    # harder to tell: short, or with words that usually mean more work
    "Compare cats and dogs as pets.",
    "Explain the CAP theorem briefly.",
    "Write a function to reverse a string in Python.",
    "Design a logo concept for a bakery called Sunrise.",
    "Plan a dinner menu for six guests.",
]

HARD = [
    "Design a globally distributed URL shortener that handles 100k writes per second and 1M reads per second with "
    "99.99% availability. Cover ID generation, storage, caching, replication across regions, and analytics, and "
    "justify the trade-offs you make.",
    "Prove that the sum of the first n odd numbers is n^2, first by induction and then with a direct combinatorial "
    "argument.",
    "My Node.js service's p99 latency jumps from 50ms to 2s every few minutes. CPU is fine, but the event loop lag "
    "spikes. Explain the likely causes, how to profile them in production, and how to fix each one.",
    "Implement a thread-safe bounded blocking queue in Java without using java.util.concurrent classes, explain "
    "the wait/notify protocol you use, and show how to test it for deadlocks.",
    "Analyze the long-term impact of remote work on commercial real estate, city tax revenues and public "
    "transport, using economic reasoning, and propose policies a city government could adopt.",
    "Compute the eigenvalues and eigenvectors of the matrix [[2, 1], [1, 2]], then explain how this diagonalization "
    "helps compute A^100 and prove the formula you use.",
    "Write a detailed technical plan to split a monolithic Rails application into services: identify bounded "
    "contexts, the order of extraction, data ownership and migration, and how to avoid distributed transactions.",
    "Compare Raft and Paxos: explain leader election, log replication and safety in each, and discuss why Raft "
    "is considered easier to implement correctly.",
    "Here is a function that is supposed to merge overlapping intervals but returns wrong results:\n"
    "```python\ndef merge(iv):\n    out = []\n    for s, e in iv:\n        if out and s < out[-1][1]:\n"
    "            out[-1][1] = e\n        else:\n            out.append([s, e])\n    return out\n```\n"
    "Find every bug, explain why each one breaks, and give a corrected version with tests for the edge cases.",
    "Write a persuasive 1200-word essay arguing for a four-day work week, addressing at least three strong "
    "counterarguments with evidence, and end with concrete implementation recommendations.",
    "Design a fraud detection pipeline for card payments that must decide within 100 ms: features, model choice, "
    "handling class imbalance, feedback loops from chargebacks, and monitoring for drift.",
    "Solve the differential equation y'' + 4y = sin(2x) with y(0) = 0 and y'(0) = 1, explaining resonance and "
    "each step of the method of undetermined coefficients.",
    "Explain how a modern CPU executes instructions out of order, including register renaming, the reorder buffer "
    "and speculative execution, and how Spectre exploits it.",
    "Create a 6-month roadmap for building a data platform at a startup: ingestion, warehouse, orchestration, "
    "data quality, governance and team hiring, with milestones and the risks at each stage.",
    "First list the assumptions, then estimate how many piano tuners work in Chicago using a Fermi estimate, then "
    "do a sensitivity analysis on the two most uncertain assumptions and explain which one matters most.",
    "Write a Python implementation of the A* search algorithm for a grid with weighted cells and diagonal moves, "
    "prove that your heuristic is admissible, and analyze the complexity.",
    "Critically compare utilitarian and deontological approaches to the ethics of self-driving cars choosing "
    "between harms, and propose a defensible policy for manufacturers.",
    "Our Kafka consumers fall behind during peak hours and rebalance constantly. Explain the possible causes "
    "(max.poll.interval, partition skew, slow processing, GC pauses), how to diagnose them, and a plan to fix it.",
    "Show that the function f(x) = x^3 - 3x + 1 has exactly three real roots and approximate each to three "
    "decimal places using Newton's method, showing the iterations.",
    "Design an access control model for a hospital records system that satisfies HIPAA: roles, attributes, "
    "break-glass access, auditing, and how to handle patients' consent revocation.",
    "Write a bash script that rotates logs for several services, compresses old files, keeps 14 days, handles "
    "services that hold files open, and reports failures by email; explain the edge cases it handles.",
    "Evaluate whether a mid-sized retailer should build or buy its e-commerce platform, considering total cost of "
    "ownership over five years, time to market, differentiation, team skills and vendor lock-in.",
    [{"role": "user", "content": "We run a Postgres primary with two replicas."},
     {"role": "assistant", "content": "Understood. What is the problem?"},
     {"role": "user", "content": "Replication lag grows to minutes under write bursts."},
     {"role": "assistant", "content": "What does the write workload look like?"},
     {"role": "user", "content": "Large batch updates from an ETL job every hour, plus normal OLTP traffic."},
     {"role": "assistant", "content": "And the replicas' hardware?"},
     {"role": "user", "content": "Same as the primary. Explain the causes and give a plan to keep lag under 5 "
                                 "seconds without slowing the ETL much."}],
    "Derive the backpropagation equations for a two-layer neural network with softmax output and cross-entropy "
    "loss, and explain why the gradient simplifies to (prediction - target).",
    "Plan the rollout of a breaking API change to 2,000 external customers: versioning, deprecation timeline, "
    "communication, migration tooling, metrics to track adoption, and how to handle customers who never migrate.",
    # harder to tell: short
    "Is there a largest prime number? Prove your answer.",
    "Why does P vs NP matter for cryptography? Be rigorous.",
    "Find a closed form for the sum of k^3 for k=1..n and prove it.",
    "What is the time complexity of building a heap, and why is it O(n) rather than O(n log n)?",
    "Explain Goedel's incompleteness theorems and their consequences.",
]

LABELLED: list[tuple[Any, str]] = ([(p, "simple") for p in SIMPLE] + [(p, "standard") for p in STANDARD]
                                   + [(p, "hard") for p in HARD])


def body_of(prompt: Any) -> dict[str, Any]:
    """The chat request a prompt of the set is sent as."""
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    return {"model": "gpt-4o-mini", "messages": messages}
