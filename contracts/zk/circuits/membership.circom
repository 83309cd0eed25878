pragma circom 2.1.0;

include "../node_modules/circomlib/circuits/poseidon.circom";
include "./merkle.circom";

// Research membership: "I know the secret behind one leaf of the research-consent tree with this
// root", bound to one study through a nullifier, without revealing which leaf.
//   identity commitment (the leaf)  = Poseidon(secret)
//   nullifier                       = Poseidon(secret, studyId)
// The same patient always yields the same nullifier for a study (counted once), and unlinkable
// nullifiers across studies. The public an opaque public value (e.g. a hash of what the patient
// shares with the study), `signalHash`, that the proof binds so a relayer cannot swap it.
template ResearchMembership(depth) {
    signal input root;
    signal input studyId;
    signal input nullifier;
    signal input signalHash;

    signal input secret;
    signal input pathElements[depth];
    signal input pathIndices[depth];

    component commitment = Poseidon(1);
    commitment.inputs[0] <== secret;

    component tree = MerkleRoot(depth);
    tree.leaf <== commitment.out;
    for (var i = 0; i < depth; i++) {
        tree.pathElements[i] <== pathElements[i];
        tree.pathIndices[i] <== pathIndices[i];
    }
    root === tree.root;

    component nullifierHash = Poseidon(2);
    nullifierHash.inputs[0] <== secret;
    nullifierHash.inputs[1] <== studyId;
    nullifier === nullifierHash.out;

    // Tie `signalHash` into a constraint so it cannot be left out of the statement.
    signal signalSquare;
    signalSquare <== signalHash * signalHash;
}

component main {public [root, studyId, nullifier, signalHash]} = ResearchMembership(20);
