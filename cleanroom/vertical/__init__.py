"""Vertical (joined) collaborations: two parties hold different columns about shared records.

Design and trust model: docs/vertical.md.

`spec` (plan section), `psi` (DH private set intersection and alignment maps), `paillier` (DJN Paillier),
`layout` (slot layouts and the ciphertexts of a round), `party` (one party's protocol state), `coordinator`
(matching, maps, table assembly), `messages` (signed protocol messages).
"""
