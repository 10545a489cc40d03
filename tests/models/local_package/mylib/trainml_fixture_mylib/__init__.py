ANSWER = 'first'
