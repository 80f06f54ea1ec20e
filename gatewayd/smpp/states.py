"""The SMPP 3.4 bind state machine as one transition table.

Rule 1: every bind-state transition lives in this file. Rule 2: the table does not know
whether we are the ESME or the SMSC; :data:`SENDER` says which side may originate an input,
and the session applies it.

Theory of operation. A connection starts OPEN. The ESME sends a bind and the connection is
BINDING until the bind response: a success moves it to one of the three bound states
(by the bind's mode), a failure back to OPEN, where the ESME may try again. In a bound state
the transmitter side may submit, the receiver side may deliver, and either side may send
enquire_link. Either side may start the unbind handshake (UNBINDING); outstanding responses
may still arrive while unbinding, new requests may not. The unbind response, a lost
connection or an unrecoverable framing error end in CLOSED, from which nothing leaves.
"""

from __future__ import annotations

import enum

from gatewayd.smpp.constants import BindMode

__all__ = ["Role", "State", "Input", "TRANSITIONS", "SENDER", "BOUND_STATE", "next_state"]


class Role(enum.Enum):
    """Which end of the connection a session plays."""

    #: External Short Message Entity: the gateway's side towards an operator.
    ESME = "esme"
    #: Short Message Service Centre: the operator's side (and the bundled simulator).
    SMSC = "smsc"


class State(enum.Enum):
    """Bind states of SMPP 3.4 section 2.2, plus the two handshake states."""

    #: Connected, not bound: only bind, outbind and enquire_link are meaningful.
    OPEN = "open"
    #: A bind request is outstanding.
    BINDING = "binding"
    #: Bound as a transmitter: the ESME may submit.
    BOUND_TX = "bound_tx"
    #: Bound as a receiver: the SMSC may deliver.
    BOUND_RX = "bound_rx"
    #: Bound as a transceiver: both directions.
    BOUND_TRX = "bound_trx"
    #: An unbind is outstanding: responses may finish, new requests may not start.
    UNBINDING = "unbinding"
    #: Finished: the connection is to be closed.
    CLOSED = "closed"


class Input(enum.Enum):
    """What can happen to a bind, whichever side originates it."""

    #: bind_transmitter / bind_receiver / bind_transceiver request.
    BIND = "bind"
    #: bind_*_resp with ESME_ROK, for each mode.
    BIND_OK_TX = "bind_ok_tx"
    BIND_OK_RX = "bind_ok_rx"
    BIND_OK_TRX = "bind_ok_trx"
    #: bind_*_resp with an error status.
    BIND_FAILED = "bind_failed"
    #: outbind: the SMSC invites the ESME to bind.
    OUTBIND = "outbind"
    #: A request in the ESME -> SMSC direction: submit_sm, data_sm from the ESME.
    SUBMIT = "submit"
    #: A request in the SMSC -> ESME direction: deliver_sm, data_sm from the SMSC, alert_notification.
    DELIVER = "deliver"
    #: The response to a SUBMIT or a DELIVER request.
    MESSAGE_RESPONSE = "message_response"
    #: enquire_link or enquire_link_resp.
    ENQUIRE_LINK = "enquire_link"
    #: generic_nack.
    GENERIC_NACK = "generic_nack"
    #: unbind request.
    UNBIND = "unbind"
    #: unbind_resp.
    UNBIND_RESP = "unbind_resp"
    #: The transport lost the connection, or the peer stopped answering.
    CONNECTION_LOST = "connection_lost"
    #: The byte stream cannot be split into PDUs any more.
    FRAMING_ERROR = "framing_error"


_BOUND = (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)
_LIVE = (State.OPEN, State.BINDING, *_BOUND, State.UNBINDING)


def _build() -> dict[tuple[State, Input], State]:
    table: dict[tuple[State, Input], State] = {
        (State.OPEN, Input.BIND): State.BINDING,
        (State.OPEN, Input.OUTBIND): State.OPEN,
        (State.BINDING, Input.BIND_OK_TX): State.BOUND_TX,
        (State.BINDING, Input.BIND_OK_RX): State.BOUND_RX,
        (State.BINDING, Input.BIND_OK_TRX): State.BOUND_TRX,
        (State.BINDING, Input.BIND_FAILED): State.OPEN,
        (State.BOUND_TX, Input.SUBMIT): State.BOUND_TX,
        (State.BOUND_TRX, Input.SUBMIT): State.BOUND_TRX,
        (State.BOUND_RX, Input.DELIVER): State.BOUND_RX,
        (State.BOUND_TRX, Input.DELIVER): State.BOUND_TRX,
        (State.UNBINDING, Input.UNBIND_RESP): State.CLOSED,
    }
    for state in (*_BOUND, State.UNBINDING):
        # Responses to requests made before the unbind still complete them.
        table[(state, Input.MESSAGE_RESPONSE)] = state
    for state in _BOUND:
        table[(state, Input.UNBIND)] = State.UNBINDING
    for state in _LIVE:
        table[(state, Input.ENQUIRE_LINK)] = state
        table[(state, Input.GENERIC_NACK)] = state
        table[(state, Input.CONNECTION_LOST)] = State.CLOSED
        table[(state, Input.FRAMING_ERROR)] = State.CLOSED
    return table


#: (state, input) -> next state. A pair that is absent is a protocol error.
TRANSITIONS: dict[tuple[State, Input], State] = _build()

#: Inputs that only one role may originate; the others may come from either side.
SENDER: dict[Input, Role] = {
    Input.BIND: Role.ESME,
    Input.OUTBIND: Role.SMSC,
    Input.SUBMIT: Role.ESME,
    Input.DELIVER: Role.SMSC,
    Input.BIND_OK_TX: Role.SMSC,
    Input.BIND_OK_RX: Role.SMSC,
    Input.BIND_OK_TRX: Role.SMSC,
    Input.BIND_FAILED: Role.SMSC,
}

#: The bound state reached by a successful bind of each mode, and its input.
BOUND_STATE: dict[BindMode, tuple[Input, State]] = {
    BindMode.TRANSMITTER: (Input.BIND_OK_TX, State.BOUND_TX),
    BindMode.RECEIVER: (Input.BIND_OK_RX, State.BOUND_RX),
    BindMode.TRANSCEIVER: (Input.BIND_OK_TRX, State.BOUND_TRX),
}


def next_state(state: State, event: Input) -> State | None:
    """Look up a transition.

    Args:
        state: the current state.
        event: what happened.

    Returns:
        The next state, or None when the input is not allowed in ``state``.
    """
    return TRANSITIONS.get((state, event))
