# test_stage_3.py
import asyncio
from actors import create_session_manager

async def test_session_manager():
    sm = create_session_manager()

    # Test create
    session_id = sm.create_session(
        mode="copilot",
        config={"model": "gpt-4"},
        name="Test Session"
    )
    assert session_id is not None
    print(f"✅ Created session: {session_id}")

    # Test save
    success = sm.save_session_state(
        session_id=session_id,
        conversation_history=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi there!"}
        ],
        context_variables={"key": "value"},
        current_phase="execution",
        current_step=1
    )
    assert success
    print("✅ Saved session state")

    # Test load
    state = sm.load_session_state(session_id)
    assert state is not None
    assert len(state["conversation_history"]) == 2
    assert state["current_phase"] == "execution"
    print("✅ Loaded session state")

    # Test suspend
    success = sm.suspend_session(session_id)
    assert success
    print("✅ Suspended session")

    # Test resume
    success = sm.resume_session(session_id)
    assert success
    print("✅ Resumed session")

    # Test list
    sessions = sm.list_sessions(status="active")
    assert any(s["session_id"] == session_id for s in sessions)
    print("✅ Listed sessions")

    # Test complete
    success = sm.complete_session(session_id)
    assert success
    print("✅ Completed session")

    # Test delete
    success = sm.delete_session(session_id)
    assert success
    print("✅ Deleted session")

    print("\n✅ All SessionManager tests passed!")

if __name__ == "__main__":
    asyncio.run(test_session_manager())
