pragma circom 2.1.0;

include "../node_modules/circomlib/circuits/poseidon.circom";
include "../node_modules/circomlib/circuits/bitify.circom";
include "../node_modules/circomlib/circuits/comparators.circom";

// Attribute predicate: "the value committed in `commitment` = Poseidon(value, salt) satisfies
//   op = 0: value >= threshold      op = 1: value < threshold"
// without revealing value or salt. Values and thresholds are unsigned 64-bit integers (scale
// fixed-point quantities, e.g. HbA1c in 0.1 % steps). `context` binds the proof to its use
// (e.g. a study id or a verifier's challenge).
template AttributePredicate(bits) {
    signal input commitment;
    signal input threshold;
    signal input op;
    signal input context;

    signal input value;
    signal input salt;

    component hash = Poseidon(2);
    hash.inputs[0] <== value;
    hash.inputs[1] <== salt;
    commitment === hash.out;

    // Range checks: LessThan(n) is only sound for inputs below 2^n.
    component valueBits = Num2Bits(bits);
    valueBits.in <== value;
    component thresholdBits = Num2Bits(bits);
    thresholdBits.in <== threshold;

    op * (1 - op) === 0;
    component lt = LessThan(bits);
    lt.in[0] <== value;
    lt.in[1] <== threshold;

    // holds = op ? lt : 1 - lt
    signal opAndLt;
    opAndLt <== op * lt.out;
    2 * opAndLt - op - lt.out + 1 === 1;

    signal contextSquare;
    contextSquare <== context * context;
}

component main {public [commitment, threshold, op, context]} = AttributePredicate(64);
