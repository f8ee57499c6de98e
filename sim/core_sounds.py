"""Names of Asterisk's core English sounds: what a stock PBX with the core sound package can play. Pure data.

Taken from Debian's ``asterisk-core-sounds-en-gsm`` (core sounds 1.6.1, installed as
/usr/share/asterisk/sounds/en -> en_US_f_Allison): every ``<name>.gsm`` below that directory, as the name
``STREAM FILE`` takes (``digits/1``, ``silence/1``). Not in it, although flows often assume them:
``welcome`` and ``please-enter-your``.
The simulator answers ``STREAM FILE`` / ``GET DATA`` of any other name as Asterisk answers a missing file.
"""

from __future__ import annotations

CORE_SOUNDS_EN: frozenset[str] = frozenset("""
activated added agent-alreadyon agent-incorrect agent-loggedoff agent-loginok agent-newlocation agent-pass
agent-user all-circuits-busy-now ascending-2tone astcc-followed-by-the-pound-key at-tone-time-exactly
auth-incorrect auth-thankyou basic-pbx-ivr-main beep beeperr call-forwarding call-fwd-no-ans call-fwd-on-busy
call-fwd-unconditional call-waiting calling cancelled cannot-complete-as-dialed check-number-dial-again
conf-adminmenu conf-adminmenu-162 conf-adminmenu-18 conf-adminmenu-menu8 conf-enteringno conf-errormenu
conf-extended conf-full conf-getchannel conf-getconfno conf-getpin conf-hasjoin conf-hasleft conf-invalid
conf-invalidpin conf-kicked conf-leaderhasleft conf-locked conf-lockednow conf-muted conf-noempty
conf-nonextended conf-now-muted conf-now-recording conf-now-unmuted conf-onlyone conf-onlyperson
conf-otherinparty conf-placeintoconf conf-roll-callcomplete conf-thereare conf-unlockednow conf-unmuted
conf-usermenu conf-usermenu-162 conf-userswilljoin conf-userwilljoin conf-waitforleader
confbridge-begin-glorious-a confbridge-begin-glorious-b confbridge-begin-glorious-c confbridge-begin-leader
confbridge-binaural-off confbridge-binaural-on confbridge-conf-begin confbridge-conf-end
confbridge-dec-list-vol-in confbridge-dec-list-vol-out confbridge-dec-talk-vol-in confbridge-dec-talk-vol-out
confbridge-has-joined confbridge-has-left confbridge-inc-list-vol-in confbridge-inc-list-vol-out
confbridge-inc-talk-vol-in confbridge-inc-talk-vol-out confbridge-invalid confbridge-join confbridge-leave
confbridge-leave-in confbridge-leave-out confbridge-lock-extended confbridge-lock-in confbridge-lock-no-join
confbridge-lock-out confbridge-locked confbridge-menu-exit-in confbridge-menu-exit-out confbridge-mute-extended
confbridge-mute-in confbridge-mute-out confbridge-muted confbridge-only-one confbridge-only-participant
confbridge-participants confbridge-pin confbridge-pin-bad confbridge-remove-last-in confbridge-remove-last-out
confbridge-removed confbridge-rest-list-vol-in confbridge-rest-list-vol-out confbridge-rest-talk-vol-in
confbridge-rest-talk-vol-out confbridge-there-are confbridge-unlocked confbridge-unmuted de-activated
demo-abouttotry demo-congrats demo-echodone demo-echotest demo-enterkeywords demo-instruct demo-moreinfo
demo-nogo demo-nomatch demo-thanks descending-2tone dictate/both_help dictate/enter_filename dictate/forhelp
dictate/pause dictate/paused dictate/play_help dictate/playback dictate/playback_mode dictate/record
dictate/record_help dictate/record_mode dictate/truncating_audio digits/0 digits/1 digits/10 digits/11 digits/12
digits/13 digits/14 digits/15 digits/16 digits/17 digits/18 digits/19 digits/2 digits/20 digits/3 digits/30
digits/4 digits/40 digits/5 digits/50 digits/6 digits/60 digits/7 digits/70 digits/8 digits/80 digits/9
digits/90 digits/a-m digits/at digits/billion digits/day-0 digits/day-1 digits/day-2 digits/day-3 digits/day-4
digits/day-5 digits/day-6 digits/dollars digits/h-1 digits/h-10 digits/h-11 digits/h-12 digits/h-13 digits/h-14
digits/h-15 digits/h-16 digits/h-17 digits/h-18 digits/h-19 digits/h-2 digits/h-20 digits/h-3 digits/h-30
digits/h-4 digits/h-40 digits/h-5 digits/h-50 digits/h-6 digits/h-60 digits/h-7 digits/h-70 digits/h-8
digits/h-80 digits/h-9 digits/h-90 digits/h-billion digits/h-hundred digits/h-million digits/h-thousand
digits/hundred digits/million digits/minus digits/mon-0 digits/mon-1 digits/mon-10 digits/mon-11 digits/mon-2
digits/mon-3 digits/mon-4 digits/mon-5 digits/mon-6 digits/mon-7 digits/mon-8 digits/mon-9 digits/oclock
digits/oh digits/p-m digits/pound digits/star digits/thousand digits/today digits/tomorrow digits/yesterday
dir-first dir-firstlast dir-instr dir-intro dir-intro-fn dir-last dir-multi1 dir-multi2 dir-multi3 dir-multi9
dir-nomatch dir-nomore dir-pls-enter dir-usingkeypad dir-welcome disabled do-not-disturb enabled
enter-num-blacklist entr-num-rmv-blklist extension feature-not-avail-line followme/call-from
followme/no-recording followme/options followme/pls-hold-while-try followme/sorry followme/status for
from-unknown-caller goodbye hello hello-world hours if-correct-press im-sorry info-about-last-call invalid is
is-in-use is-set-to letters/a letters/ascii123 letters/ascii124 letters/ascii125 letters/ascii126
letters/ascii34 letters/ascii36 letters/ascii37 letters/ascii38 letters/ascii39 letters/ascii40 letters/ascii41
letters/ascii42 letters/ascii44 letters/ascii58 letters/ascii59 letters/ascii60 letters/ascii62 letters/ascii63
letters/ascii91 letters/ascii92 letters/ascii93 letters/ascii94 letters/ascii95 letters/ascii96 letters/asterisk
letters/at letters/b letters/c letters/d letters/dash letters/dollar letters/dot letters/e letters/equals
letters/exclaimation-point letters/f letters/g letters/h letters/i letters/j letters/k letters/l letters/m
letters/n letters/o letters/p letters/plus letters/q letters/r letters/s letters/slash letters/space letters/t
letters/u letters/v letters/w letters/x letters/y letters/z letters/zed location lowercase minute minutes
num-was-successfully number number-not-answering one-moment-please pbx-invalid pbx-invalidpark pbx-parkingfailed
pbx-transfer phonetic/9_p phonetic/a_p phonetic/b_p phonetic/c_p phonetic/d_p phonetic/e_p phonetic/f_p
phonetic/g_p phonetic/h_p phonetic/i_p phonetic/j_p phonetic/k_p phonetic/l_p phonetic/m_p phonetic/n_p
phonetic/o_p phonetic/p_p phonetic/q_p phonetic/r_p phonetic/s_p phonetic/t_p phonetic/u_p phonetic/v_p
phonetic/w_p phonetic/x_p phonetic/y_p phonetic/z_p please-try-again please-try-call-later pls-hold-while-try
pm-invalid-option priv-callee-options priv-callpending priv-introsaved priv-recordintro privacy-incorrect
privacy-prompt privacy-thankyou privacy-to-blacklist-last-caller privacy-unident queue-callswaiting
queue-holdtime queue-less-than queue-minute queue-minutes queue-periodic-announce queue-quantity1
queue-quantity2 queue-reporthold queue-seconds queue-thankyou queue-thereare queue-youarenext removed
screen-callee-options second seconds silence/1 silence/10 silence/2 silence/3 silence/4 silence/5 silence/6
silence/7 silence/8 silence/9 simul-call-limit-reached something-terribly-wrong sorry
sorry-youre-having-problems speed-dial speed-dial-empty spy-agent spy-console spy-dahdi spy-h323 spy-iax
spy-iax2 spy-jingle spy-local spy-mgcp spy-misdn spy-mobile spy-nbs spy-sip spy-skinny spy-unistim spy-usbradio
spy-zap ss-noservice telephone-number time to-call-this-number to-extension to-listen-to-it to-rerecord-it
transfer tt-allbusy tt-monkeys tt-monkeysintro tt-somethingwrong tt-weasels unidentified-no-callback uppercase
vm-Cust1 vm-Cust2 vm-Cust3 vm-Cust4 vm-Cust5 vm-Family vm-Friends vm-INBOX vm-Old vm-Urgent vm-Work vm-advopts
vm-and vm-calldiffnum vm-changeto vm-delete vm-deleted vm-dialout vm-duration vm-enter-num-to-call vm-extension
vm-first vm-for vm-forward vm-forward-multiple vm-forwardoptions vm-from vm-from-extension vm-from-phonenumber
vm-goodbye vm-helpexit vm-incorrect vm-incorrect-mailbox vm-instructions vm-intro vm-invalid-password
vm-invalidpassword vm-isonphone vm-isunavail vm-last vm-leavemsg vm-login vm-mailboxfull vm-marked-nonurgent
vm-marked-urgent vm-message vm-messages vm-minutes vm-mismatch vm-msgforwarded vm-msginstruct vm-msgsaved
vm-newpassword vm-newuser vm-next vm-no vm-nobodyavail vm-nobox vm-nomore vm-nonumber vm-num-i-have vm-onefor
vm-onefor-full vm-options vm-opts vm-opts-full vm-passchanged vm-password vm-pls-try-again vm-press vm-prev
vm-reachoper vm-rec-busy vm-rec-name vm-rec-temp vm-rec-unv vm-received vm-record-prepend vm-reenterpassword
vm-repeat vm-review vm-review-nonurgent vm-review-urgent vm-saved vm-savedto vm-savefolder vm-savemessage
vm-saveoper vm-sorry vm-star-cancel vm-starmain vm-tempgreetactive vm-tempgreeting vm-tempgreeting2
vm-tempremoved vm-then-pound vm-theperson vm-tmpexists vm-tocallback vm-tocallnum vm-tocancel vm-tocancelmsg
vm-toenternumber vm-toforward vm-tohearenv vm-tomakecall vm-tooshort vm-toreply vm-torerecord vm-undelete
vm-undeleted vm-unknown-caller vm-whichbox vm-youhave with you-entered your
""".split())
