"""Evaluation of released synthetic data: utility, fidelity, membership inference, and the party report.

Every statistic a party computes on its own real rows is a fixed-length int64 vector that adds up across
parties (the sum of the parties' vectors equals the vector of the pooled data), so it can be noised and
combined by secure aggregation; a `*_from_vector` / `combined_*` function turns the summed, noisy vector back
into metrics. Each vector type documents its per-record L2 sensitivity for the accountant.
"""
