"""Analysis of trained models: what the adversary does to texts (inspection), accuracy and
representation drift under attack (robustness), 2-D maps (projection), RAR reconstructions,
reports and significance (report, stats), perplexity of adversarial text (lm). Every attack is
built in one place, ``attacks.build_attack``."""
