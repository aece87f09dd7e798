"""One module per probe kind: each composes the wire layers (edgecheck/probes, edgecheck/host)
into a CheckResult whose reason names the first failing layer. Checks state what they found; the
diagnosis layer (edgecheck/diagnosis) says what to do about it."""
