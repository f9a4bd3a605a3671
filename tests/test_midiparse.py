"""The one input parser: whole messages out of any bytes, resynchronising as a MIDI 1.0
receiver does, counting what it drops."""

import pytest

from bachd.live.midiparse import MidiParser


def feed_all(parser, *chunks):
    out = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


def test_whole_messages_pass_through():
    parser = MidiParser()
    assert feed_all(parser, [0x90, 60, 100], [0x80, 60, 0], [0xB2, 123, 0], [0xC0, 5]) == [
        (0x90, 60, 100), (0x80, 60, 0), (0xB2, 123, 0), (0xC0, 5)]
    assert parser.stats.dropped_bytes == parser.stats.dropped_messages == 0


def test_a_status_byte_ends_an_unterminated_sysex():
    parser = MidiParser()
    out = feed_all(parser, [0xF0, 0x43, 0x12, 0x00], [0x90, 62, 100], [0x80, 62, 0])
    assert out == [(0x90, 62, 100), (0x80, 62, 0)]
    assert parser.stats.dropped_messages == 1


def test_what_rtmidi_jack_delivers_after_an_unterminated_sysex():
    """python-rtmidi's JACK input glues every later event onto the open SysEx until some event
    ends with F7 (bachd's keepalive): one delivery, taken apart again."""
    glued = [0xF0, 1, 2, 3, 0x90, 62, 100, 0xF8, 0x80, 62, 0, 0xF0, 0x7D, 0x62, 0x64, 0xF7]
    parser = MidiParser()
    assert parser.feed(glued) == [(0x90, 62, 100), (0xF8,), (0x80, 62, 0), (0xF0, 0x7D, 0x62, 0x64)]
    assert parser.stats.dropped_messages == 1


def test_realtime_bytes_come_out_wherever_they_are():
    parser = MidiParser()
    out = feed_all(parser, [0x90, 0xF8, 60, 0xFA, 100], [0xF0, 1, 0xFC, 2, 0xF7])
    assert out == [(0xF8,), (0xFA,), (0x90, 60, 100), (0xFC,), (0xF0, 1, 2)]
    assert parser.stats.dropped_messages == 0


def test_running_status_and_stray_data():
    parser = MidiParser()
    assert parser.feed([0x45, 0x46]) == []  # data with no status: dropped
    assert parser.stats.dropped_bytes == 2
    assert parser.feed([0x90, 60, 100, 62, 100, 64, 0]) == [(0x90, 60, 100), (0x90, 62, 100), (0x90, 64, 0)]
    assert parser.feed([66, 90]) == [(0x90, 66, 90)]  # running status across deliveries
    assert parser.feed([0xF0, 1, 0xF7, 68, 90]) == [(0xF0, 1)]  # SysEx cancels running status
    assert parser.stats.dropped_bytes == 4


def test_song_position_and_a_message_split_across_deliveries():
    parser = MidiParser()
    assert feed_all(parser, [0xF2, 0x10], [0x01], [0x90], [61], [99]) == [(0xF2, 0x10, 0x01), (0x90, 61, 99)]


@pytest.mark.parametrize("limit", [8, 64])
def test_a_sysex_over_the_cap_is_dropped_and_what_follows_survives(limit):
    parser = MidiParser(sysex_limit=limit)
    assert parser.feed([0xF0] + [1] * (limit + 5) + [0xF7, 0x90, 60, 100]) == [(0x90, 60, 100)]
    assert parser.stats.dropped_messages == 1
    assert parser.feed([0xF0] + [1] * limit + [0xF7]) == [(0xF0,) + (1,) * limit]


def test_undefined_and_orphan_bytes_are_counted():
    parser = MidiParser()
    assert parser.feed([0xF4, 0xF5, 0xF7, 0xF9, 0xFD, 0x90, 60, 100]) == [(0x90, 60, 100)]
    assert parser.stats.dropped_bytes == 5
