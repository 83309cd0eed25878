// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {
    ACCOUNT_ALLOW_LIST,
    IMedLedgerMembership,
    MEDLEDGER,
    NODE_ALLOW_LIST
} from "./system/SystemAddresses.sol";

/// @title ConsortiumGovernance
/// @notice Majority vote of the member hospitals. An admin of an active member proposes a call
///         to one of the system contracts (MedLedger: add or suspend a member; NodeAllowList /
///         AccountAllowList: add or remove an entry); each member votes once through any of its
///         admins; when more than half of the active members have voted yes, the call runs.
///         The proposer's vote counts, so a one-member consortium executes at once.
/// @dev Predeployed in genesis with empty storage. If the governed call reverts, the vote that
///      would execute it reverts too (with the call's revert data) and the proposal stays open.
contract ConsortiumGovernance {
    /// @notice A proposal expires this long after it was made.
    uint256 public constant VOTING_PERIOD = 7 days;

    struct Proposal {
        address target; // slot +0, bytes 0-19
        uint40 deadline; // slot +0, bytes 20-24
        uint32 yesVotes; // slot +0, bytes 25-28
        bool executed; // slot +0, byte 29
        address proposer; // slot +1
        bytes data; // slot +2
    }

    uint256 public proposalCount; // slot 0
    mapping(uint256 => Proposal) internal _proposals; // slot 1
    mapping(uint256 => mapping(uint32 => bool)) internal _voted; // slot 2: proposal => member

    error NotMemberAdmin(address caller);
    error InvalidTarget(address target);
    error InvalidCalldata();
    error UnknownProposal(uint256 id);
    error ProposalExpired(uint256 id);
    error ProposalAlreadyExecuted(uint256 id);
    error AlreadyVoted(uint256 id, uint32 member);

    event ProposalCreated(
        uint256 indexed id, uint32 indexed member, address indexed proposer, address target, bytes data,
        uint40 deadline
    );
    event Voted(uint256 indexed id, uint32 indexed member, address indexed admin, uint32 yesVotes, uint32 needed);
    event ProposalExecuted(uint256 indexed id, address indexed target);

    /// @notice Propose `target.call(data)`; the caller's member votes yes at once.
    function propose(address target, bytes calldata data) external returns (uint256 id) {
        uint32 member = _member();
        if (target != MEDLEDGER && target != NODE_ALLOW_LIST && target != ACCOUNT_ALLOW_LIST) {
            revert InvalidTarget(target);
        }
        if (data.length < 4) revert InvalidCalldata();
        unchecked {
            id = ++proposalCount;
        }
        Proposal storage p = _proposals[id];
        p.target = target;
        p.deadline = uint40(block.timestamp + VOTING_PERIOD);
        p.proposer = msg.sender;
        p.data = data;
        emit ProposalCreated(id, member, msg.sender, target, data, p.deadline);
        _vote(id, p, member);
    }

    /// @notice Vote yes for the caller's member; executes the proposal on reaching a majority.
    /// @return executed whether this vote executed the proposal.
    function vote(uint256 id) external returns (bool executed) {
        uint32 member = _member();
        Proposal storage p = _proposals[id];
        if (p.target == address(0)) revert UnknownProposal(id);
        if (p.executed) revert ProposalAlreadyExecuted(id);
        if (block.timestamp >= p.deadline) revert ProposalExpired(id);
        return _vote(id, p, member);
    }

    function proposal(uint256 id)
        external
        view
        returns (address target, bytes memory data, address proposer, uint40 deadline, uint32 yesVotes, bool executed)
    {
        Proposal storage p = _proposals[id];
        if (p.target == address(0)) revert UnknownProposal(id);
        return (p.target, p.data, p.proposer, p.deadline, p.yesVotes, p.executed);
    }

    function hasVoted(uint256 id, uint32 member) external view returns (bool) {
        return _voted[id][member];
    }

    /// @notice Yes votes a proposal needs now: a strict majority of the active members.
    function votesNeeded() public view returns (uint32) {
        return IMedLedgerMembership(MEDLEDGER).memberCount() / 2 + 1;
    }

    function _member() internal view returns (uint32 member) {
        member = IMedLedgerMembership(MEDLEDGER).memberAdminOf(msg.sender);
        if (member == 0) revert NotMemberAdmin(msg.sender);
    }

    function _vote(uint256 id, Proposal storage p, uint32 member) internal returns (bool) {
        if (_voted[id][member]) revert AlreadyVoted(id, member);
        _voted[id][member] = true;
        uint32 yes = p.yesVotes + 1;
        p.yesVotes = yes;
        uint32 needed = votesNeeded();
        emit Voted(id, member, msg.sender, yes, needed);
        if (yes < needed) return false;
        p.executed = true;
        (bool ok, bytes memory result) = p.target.call(p.data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
        emit ProposalExecuted(id, p.target);
        return true;
    }
}
