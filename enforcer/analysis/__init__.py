"""What the model answers for people: reachability matrices, explanations, lint findings."""
