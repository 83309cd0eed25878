pragma circom 2.1.0;

include "../node_modules/circomlib/circuits/poseidon.circom";

// Root of a binary Poseidon Merkle tree from a leaf and its authentication path.
// pathIndices[i] = 1 when the running node is the RIGHT child at level i (bit i of the leaf index),
// which is the order ResearchConsent.sol hashes in: node = Poseidon(left, right).
template MerkleRoot(depth) {
    signal input leaf;
    signal input pathElements[depth];
    signal input pathIndices[depth];
    signal output root;

    signal node[depth + 1];
    signal left[depth];
    signal right[depth];
    component hashers[depth];

    node[0] <== leaf;
    for (var i = 0; i < depth; i++) {
        pathIndices[i] * (1 - pathIndices[i]) === 0;
        // index 0: (node, sibling); index 1: (sibling, node)
        left[i] <== node[i] + pathIndices[i] * (pathElements[i] - node[i]);
        right[i] <== pathElements[i] + node[i] - left[i];
        hashers[i] = Poseidon(2);
        hashers[i].inputs[0] <== left[i];
        hashers[i].inputs[1] <== right[i];
        node[i + 1] <== hashers[i].out;
    }
    root <== node[depth];
}
